"""The customer's languages: French and Arabic (right to left). One table of phrases; `t(lang, key)`."""

LANGS = ("fr", "ar")
DIR = {"fr": "ltr", "ar": "rtl"}

PHRASES = {
    "app": ("Agence numérique", "الوكالة الرقمية"),
    "signin": ("Se connecter", "تسجيل الدخول"),
    "phone": ("Numéro de téléphone", "رقم الهاتف"),
    "send_code": ("Recevoir un code par SMS", "استلام رمز عبر الرسائل القصيرة"),
    "code": ("Code reçu par SMS", "الرمز المستلم"),
    "verify": ("Valider", "تأكيد"),
    "signout": ("Se déconnecter", "تسجيل الخروج"),
    "home": ("Accueil", "الرئيسية"),
    "consumption": ("Consommation", "الاستهلاك"),
    "buy": ("Acheter du crédit", "شراء رصيد"),
    "purchases": ("Achats et reçus", "المشتريات والإيصالات"),
    "statements": ("Relevés", "الكشوف"),
    "tickets": ("Signaler une panne", "الإبلاغ عن عطل"),
    "preferences": ("Préférences", "التفضيلات"),
    "meter": ("Compteur", "العداد"),
    "credit": ("Crédit", "الرصيد"),
    "as_of": ("relevé le", "بتاريخ"),
    "supply": ("Alimentation", "التغذية"),
    "supply_closed": ("en service", "موصولة"),
    "supply_open": ("coupée", "مقطوعة"),
    "today": ("Aujourd'hui", "اليوم"),
    "this_month": ("Ce mois-ci", "هذا الشهر"),
    "days_left": ("Jours restants (estimation)", "الأيام المتبقية (تقدير)"),
    "warnings": ("Avertissements", "تنبيهات"),
    "no_reading": ("Pas encore de relevé de ce compteur", "لا توجد قراءة لهذا العداد بعد"),
    "amount": ("Montant", "المبلغ"),
    "pay": ("Payer", "ادفع"),
    "min_amount": ("Montant minimum", "الحد الأدنى"),
    "state": ("État", "الحالة"),
    "token": ("Code de recharge", "رمز الشحن"),
    "receipt": ("Reçu", "إيصال"),
    "category": ("Catégorie", "الفئة"),
    "description": ("Description", "الوصف"),
    "send": ("Envoyer", "إرسال"),
    "language": ("Langue", "اللغة"),
    "channels": ("Recevoir relevés et reçus par", "استلام الكشوف والإيصالات عبر"),
    "save": ("Enregistrer", "حفظ"),
    "download_csv": ("Télécharger (CSV)", "تحميل (CSV)"),
    "daily_30": ("Par jour, 30 derniers jours", "يوميا، آخر 30 يوما"),
    "daily_90": ("Par jour, 90 derniers jours", "يوميا، آخر 90 يوما"),
    "monthly_12": ("Par mois, 12 derniers mois", "شهريا، آخر 12 شهرا"),
    "previous": ("période précédente", "الفترة السابقة"),
    "cost_split": ("Coût par tranche", "التكلفة حسب الشريحة"),
    "standing": ("Abonnement", "الاشتراك"),
    "contact": ("Coordonnées", "بيانات الاتصال"),
    "change_contact": ("Changer (un code est envoyé au nouveau contact)", "تغيير (يرسل رمز إلى العنوان الجديد)"),
    "created": ("Créé", "أنشئ"),
    "st_created": ("en attente du paiement", "في انتظار الدفع"),
    "st_pending": ("en attente de votre accord chez l'opérateur", "في انتظار موافقتك لدى المزود"),
    "st_paid": ("payé, code en préparation", "مدفوع، جار إعداد الرمز"),
    "st_vended": ("code envoyé au compteur", "أرسل الرمز إلى العداد"),
    "st_credited": ("crédité (confirmé par le compteur)", "تمت إضافة الرصيد (أكده العداد)"),
    "st_failed": ("échoué", "فشل"),
    "st_refund_pending": ("remboursement en cours", "جار الاسترداد"),
    "st_refunded": ("remboursé", "تم الاسترداد"),
    "t_open": ("ouvert", "مفتوح"), "t_assigned": ("attribué", "مسند"), "t_in_progress": ("en cours", "قيد المعالجة"),
    "t_closed": ("fermé", "مغلق"),
    "reason_NO_CREDIT": ("crédit épuisé : rechargez pour rétablir le courant", "نفاد الرصيد: اشحن لإعادة التيار"),
    "reason_OVER_POWER": ("puissance trop élevée : réduisez les appareils en marche", "استهلاك يفوق القدرة: قلل الأجهزة المشغلة"),
    "reason_REMOTE": ("coupé à distance par le fournisseur", "قطع عن بعد من المزود"),
    "reason_TAMPER": ("fraude détectée sur le compteur", "اكتشاف تلاعب في العداد"),
    "reason_FAULT": ("défaut du compteur", "عطل في العداد"),
    "reason_OVER_VOLTAGE": ("tension du réseau trop haute", "جهد الشبكة مرتفع جدا"),
    "reason_UNDER_VOLTAGE": ("tension du réseau trop basse", "جهد الشبكة منخفض جدا"),
    "reason_RELAY_TEST": ("essai du relais", "اختبار المرحل"),
    "reason_SERVICE": ("intervention technique", "تدخل تقني"),
    "reason_none": ("aucune coupure", "لا يوجد قطع"),
    "warn_low": ("Crédit bas : rechargez bientôt", "رصيد منخفض: اشحن قريبا"),
    "warn_stale": ("Le compteur n'a rien envoyé depuis plus de 3 heures", "لم يرسل العداد شيئا منذ أكثر من 3 ساعات"),
    "warn_tamper": ("Une fraude a été signalée sur ce compteur", "تم الإبلاغ عن تلاعب في هذا العداد"),
    "warn_debt": ("Dette sur le compteur", "دين على العداد"),
    "debt_share": ("dont arriérés, remboursés par une part de chaque recharge, sans coupure :",
                   "منها متأخرات تسدد بنسبة من كل شحنة، دون قطع:"),
    "warn_pending": ("Un achat est en cours de livraison", "عملية شراء قيد التوصيل"),
    "kwh": ("kWh", "ك.و.س"),
    "cat_no_power": ("Pas de courant", "انقطاع الكهرباء"),
    "cat_meter_display": ("Écran ou clavier du compteur", "شاشة أو لوحة مفاتيح العداد"),
    "cat_token": ("Code de recharge refusé", "رمز الشحن مرفوض"),
    "cat_billing": ("Facturation", "الفوترة"),
    "cat_other": ("Autre", "أخرى"),
    "approve_hint": ("Vous allez confirmer le paiement chez votre opérateur mobile.", "ستؤكد الدفع لدى مزود الدفع عبر الهاتف."),
    "follow": ("Suivi de l'achat", "متابعة الشراء"),
    "offline_hint": ("Si le compteur est hors ligne, tapez ce code sur son clavier.", "إذا كان العداد غير متصل، اكتب هذا الرمز على لوحة مفاتيحه."),
    "arrears": ("Arriérés", "المتأخرات"),
    "month": ("Mois", "الشهر"),
    "energy": ("Énergie", "الطاقة"),
    "cost": ("Coût", "التكلفة"),
    "view": ("Voir", "عرض"),
    "email": ("E-mail", "البريد الإلكتروني"),
    "whatsapp": ("WhatsApp", "واتساب"),
    "sms": ("SMS", "رسائل قصيرة"),
    "new_ticket": ("Nouveau signalement", "بلاغ جديد"),
    "history": ("Historique", "السجل"),
    "skip": ("Aller au contenu", "انتقل إلى المحتوى"),
}

SMS = {
    "otp": ("Votre code: {code} (valable {minutes} min). Ne le donnez a personne.", "رمزك: {code} (صالح {minutes} دقيقة). لا تعطه لأحد."),
    "token": ("Achat {amount} {cur} compteur {meter}: code {token}", "شراء {amount} {cur} العداد {meter}: الرمز {token}"),
    "receipt": ("Recu {ref}: {amount} {cur} credite sur {meter} le {date}.", "إيصال {ref}: {amount} {cur} أضيفت إلى {meter} في {date}."),
    "refund": ("Achat {ref} rembourse: {amount} {cur}.", "تم استرداد الشراء {ref}: {amount} {cur}."),
    "ticket": ("Signalement #{id}: {state}.", "البلاغ رقم {id}: {state}."),
    "contact_code": ("Code de confirmation: {code}", "رمز التأكيد: {code}"),
    "statement": ("Releve {month} compteur {meter}: {kwh} kWh, {cost} {cur}.", "كشف {month} العداد {meter}: {kwh} ك.و.س، {cost} {cur}."),
}


def lang_of(value):
    return value if value in LANGS else "fr"


def t(lang, key):
    pair = PHRASES.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "ar" else pair[0]


def sms(lang, key, **kw):
    pair = SMS[key]
    return (pair[1] if lang == "ar" else pair[0]).format(**kw)
