"""The texts the meter sends by SMS, in Arabic, French and English (for "BAL"), with money shown in
MRU from integer minor units (1 MRU = `minor_per_unit` minor units, 100 by default) and energy in kWh
with one decimal. The only place where comms turns integers into human units."""

_TEXT = {
    "fr": {
        "balance": "Solde: {credit} MRU, environ {days} jours restants.",
        "balance_nodays": "Solde: {credit} MRU.",
        "low_credit": "Attention: crédit faible ({credit} MRU), environ {days} jours. Rechargez rapidement.",
        "topup": "Recharge de {amount} MRU acceptée. Nouveau solde: {credit} MRU.",
        "statement": "Relevé {month}: {kwh} kWh, montant {cost} MRU, recharges {topups} MRU. Solde: {credit} MRU.",
        "token": "Code {token}: {result}.",
        "cmd": "CMD {seq}: {code}",
    },
    "ar": {
        "balance": "رصيدك {credit} أوقية، يكفي حوالي {days} يوما.",
        "balance_nodays": "رصيدك {credit} أوقية.",
        "low_credit": "تنبيه: رصيدك منخفض ({credit} أوقية)، حوالي {days} يوما. يرجى الشحن قريبا.",
        "topup": "تم شحن {amount} أوقية. رصيدك الجديد {credit} أوقية.",
        "statement": "كشف شهر {month}: الاستهلاك {kwh} ك.و.س، المبلغ {cost} أوقية، الشحن {topups} أوقية. الرصيد {credit} أوقية.",
        "token": "الرمز {token}: {result}.",
        "cmd": "CMD {seq}: {code}",
    },
    "en": {
        "balance": "Balance: {credit} MRU, about {days} days left.",
        "balance_nodays": "Balance: {credit} MRU.",
        "low_credit": "Low credit: {credit} MRU, about {days} days left. Please top up soon.",
        "topup": "Top-up of {amount} MRU accepted. New balance: {credit} MRU.",
        "statement": "Statement {month}: {kwh} kWh, cost {cost} MRU, top-ups {topups} MRU. Balance: {credit} MRU.",
        "token": "Token {token}: {result}.",
        "cmd": "CMD {seq}: {code}",
    },
}

_RESULTS = {
    "fr": {"accepted": "accepté", "old": "trop ancien", "used": "déjà utilisé", "key_expired": "clé expirée",
           "crc_error": "code erroné", "format_error": "format invalide",
           "locked_out": "clavier bloqué, réessayez plus tard", "key_change_waiting": "en attente du second code",
           "refused": "refusé"},
    "ar": {"accepted": "مقبول", "old": "قديم", "used": "مستعمل سابقا", "key_expired": "مفتاح منتهي",
           "crc_error": "رمز خاطئ", "format_error": "صيغة غير صحيحة", "locked_out": "مقفل، حاول لاحقا",
           "key_change_waiting": "في انتظار الرمز الثاني", "refused": "مرفوض"},
    "en": {"accepted": "accepted", "old": "too old", "used": "already used", "key_expired": "key expired",
           "crc_error": "wrong code", "format_error": "bad format", "locked_out": "locked, try later",
           "key_change_waiting": "waiting for the second token", "refused": "refused"},
}


def money(minor, lang="fr", minor_per_unit=100):
    """"1234,50" (French) or "1234.50" from minor units; never rounded, the sign kept."""
    sign = "-" if minor < 0 else ""
    minor = -minor if minor < 0 else minor
    whole = minor // minor_per_unit
    frac = minor % minor_per_unit
    digits = len(str(minor_per_unit - 1)) if minor_per_unit > 1 else 0
    if not digits:
        return sign + str(whole)
    frac_s = str(frac)
    frac_s = "0" * (digits - len(frac_s)) + frac_s
    return sign + str(whole) + ("," if lang == "fr" else ".") + frac_s


def kwh(wh, lang="fr"):
    """Energy with one decimal, truncated (a statement never shows more than was used)."""
    return str(wh // 1000) + ("," if lang == "fr" else ".") + str((wh % 1000) // 100)


def render(kind, lang, minor_per_unit=100, **v):
    """A message text. Money values (credit, amount, cost, topups) are minor units, energy (wh) is
    Wh, anything else is shown as given."""
    if lang not in _TEXT:
        lang = "fr"
    for k in ("credit", "amount", "cost", "topups"):
        if k in v:
            v[k] = money(v[k], lang, minor_per_unit)
    if "wh" in v:
        v["kwh"] = kwh(v.pop("wh"), lang)
    if "result" in v:
        v["result"] = _RESULTS[lang].get(v["result"], v["result"])
    if kind == "balance" and (v.get("days") is None or v.get("days") < 0):
        kind = "balance_nodays"        # no estimate yet (less than a day of use recorded)
    return _TEXT[lang][kind].format(**v)
