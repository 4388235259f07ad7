"""The LCD's words, in French written without accents (the HD44780 ROM A00 has none; see docs/ui.md).

French is the LCD language whatever the customer's `language`: the controller's ROM has no Arabic
glyphs (and 8 custom characters cannot draw a script that joins letters), so Arabic is kept for SMS,
which carry UCS2. Accents are transliterated here by hand (e-acute -> e) rather than folded at run time,
so each text is exactly what the screen shows; "~" and "\\" are avoided too (ROM A00 draws them as
other symbols). Every text fits 20 columns.

RAM: the words are three `const` strings (one object each, never a module-level name per text: each
of those costs ~100 bytes on the heap). `fr.BALANCE`, `fr.REASONS` ... are served by the module's
`__getattr__`, which cuts the text out (a small new string) or builds the table of tuples when
asked; tables are read with `lookup`, a linear scan.
"""
from micropython import const

# Why the supply is open (names from relay/supply.py NAMES): name|text.
_REASONS = const(
    'NO_CREDIT|Credit epuise\n'
    'OVER_POWER|Puissance depassee\n'
    'REMOTE|Coupure a distance\n'
    'TAMPER|Fraude detectee\n'
    'FAULT|Defaut compteur\n'
    'OVER_VOLTAGE|Surtension\n'
    'UNDER_VOLTAGE|Sous-tension\n'
    'RELAY_TEST|Test du relais\n'
    'SERVICE|Maintenance\n'
)

# Result name|headline|detail shown when the result carries none (empty: None). Token results are the
# decoder's names (tokens/decoder.py), emergency ones the ledger's refusals (credit/ledger.py).
_RESULTS = const(
    'accepted|CODE ACCEPTE|\n'
    'key_change_waiting|CODE ACCEPTE|Entrer le 2e code\n'
    'old|CODE REFUSE|Code trop ancien\n'
    'used|CODE REFUSE|Code deja utilise\n'
    'key_expired|CODE REFUSE|Cle expiree\n'
    'crc_error|CODE REFUSE|Verifier le code\n'
    'format_error|CODE REFUSE|Code invalide\n'
    'locked_out|CLAVIER BLOQUE|Attendre\n'
    "granted|CREDIT D'URGENCE|Accorde\n"
    'disabled|URGENCE REFUSEE|Non disponible\n'
    'unavailable|URGENCE REFUSEE|Non disponible\n'
    'already_taken|URGENCE REFUSEE|Deja utilisee\n'
    'credit_not_low|URGENCE REFUSEE|Credit suffisant\n'
    'reconnected|COURANT RETABLI|\n'
    'reconnect_refused|RECONNEXION|Impossible\n'
    'error|ERREUR|Reessayer\n'
)

# Warning name|text (a (name, value) warning puts its value in through the display).
_WARNINGS = const(
    'low_credit|Credit faible\n'
    'friendly|Periode de grace\n'
    'no_time|Heure non reglee\n'
    "emergency|Credit d'urgence\n"
    'tamper|Fraude: controle\n'
)

# Screen titles, labels and messages: NAME=text, one a line (a text may hold "=", never a newline).
_WORDS = const(
    "\n"
    'BALANCE=SOLDE\n'
    'CONSUMPTION=CONSOMMATION\n'
    'SUPPLY=ALIMENTATION\n'
    'WARNINGS_TITLE=AVERTISSEMENTS\n'
    'LINK=COMMUNICATION\n'
    'INFO=COMPTEUR\n'
    'SUPPLY_ON=Courant: en service\n'
    'SUPPLY_OFF=Courant: coupe\n'
    'PRESS_RECONNECT=Appuyer RECONNECT\n'
    'TO_RESTORE=pour retablir\n'
    'TODAY=Jour\n'
    'POWER=Puissance\n'
    'MONTH=Mois\n'
    'NONE=Aucun\n'
    'NO_TIME=Heure non reglee\n'
    'NO_LINK=Pas de liaison\n'
    'NUMBER=No \n'
    'VERSION=Version \n'
    'MODE_MONEY=Mode: argent \n'
    'MODE_KWH=Mode: energie kWh\n'
    'DEBT=Dette \n'
    'EMERGENCY_OWED=Urgence \n'
    'EMERGENCY_AVAILABLE=EMERG=credit urgence\n'
    'DAYS_LEFT=Reste env. %d jours\n'
    'DAY_LEFT=Reste env. 1 jour\n'
    'LESS_THAN_A_DAY=Reste < 1 jour\n'
    "GRACE_UNTIL=Grace jusqu'a \n"
    'ENTRY_TITLE=CODE DE RECHARGE\n'
    'ENTRY_HINT=ENTER=OK BACK=corr.\n'
    "CONFIRM_TITLE=CREDIT D'URGENCE\n"
    'CONFIRM_AMOUNT=Prendre %s ?\n'
    'CONFIRM_ANY=Prendre le credit ?\n'
    'CONFIRM_YES=ENTER = confirmer\n'
    'CONFIRM_NO=BACK = annuler\n'
    'NEW_BALANCE=Solde \n'
    'WAIT=Attendre \n'
    'UNKNOWN_TIME=--:--\n'
)


def _table(text):
    rows = []
    for line in text.split("\n"):
        if line:
            rows.append(tuple(f or None for f in line.split("|")))
    return tuple(rows)


def __getattr__(name):
    """fr.BALANCE and the other texts, and the tables fr.REASONS, fr.RESULTS, fr.WARNINGS."""
    if name == "REASONS":
        return _table(_REASONS)
    if name == "RESULTS":
        return _table(_RESULTS)
    if name == "WARNINGS":
        return _table(_WARNINGS)
    i = _WORDS.find("\n" + name + "=")
    if i < 0 or not name.isupper():
        raise AttributeError(name)
    i += len(name) + 2
    return _WORDS[i:_WORDS.index("\n", i)]


def lookup(table, name):
    """The entry of `table` whose first item is `name`, or None."""
    for row in table:
        if row[0] == name:
            return row
    return None
