"""The LCD display model: every screen for representative snapshots (exact 20-column lines), redraw
only on change, NEXT cycling, automatic rotation, and result overlays expiring on wrapping ticks."""
import pytest

from credit import civil
from ui import display as D
from ui_fakes import RecordingLcd, WrapClock

T = civil.unix(2026, 11, 25, 14, 5, 30)


def snap(**kw):
    s = {"credit": 1234567, "mode": "money", "currency": "MRU", "minor_per_major": 100, "debt": 0,
         "emergency": "unavailable", "today_wh": 12345, "p_w": 1234, "supply": "closed", "reasons": [],
         "awaiting_key": False, "warnings": [], "link": "4G -71dBm MQTT", "time": T, "time_valid": True,
         "meter_id": "01234567890", "version": "0.1.0", "language": "fr"}
    s.update(kw)
    return s


def make(cfg=None, **kw):
    clock, lcd = WrapClock(), RecordingLcd()
    d = D.Display(lcd, clock, cfg)
    d.update(snap(**kw))
    return d, lcd, clock


def screen(name, **kw):
    d, lcd, _ = make(**kw)
    d.screen = D.SCREENS.index(name)
    lines = d.render()
    assert all(len(x) == 20 for x in lines) and len(lines) == 4
    return lines


# -- main -----------------------------------------------------------------------------------------
def test_main_screen_shows_credit_time_and_supply():
    assert screen("main") == [
        "SOLDE          14:05",
        "        12345.67 MRU",
        "Courant: en service ",
        "                    "]


def test_main_screen_in_kwh_mode_shows_energy_credit():
    assert screen("main", mode="kwh", credit=123456) == [
        "SOLDE          14:05",
        "          123.45 kWh",
        "Courant: en service ",
        "                    "]


def test_main_screen_without_a_trusted_time_shows_dashes():
    assert screen("main", time_valid=False)[0] == "SOLDE          --:--"


def test_main_screen_open_supply_names_the_first_reason():
    assert screen("main", supply="open", reasons=["NO_CREDIT", "TAMPER"], credit=0) == [
        "SOLDE          14:05",
        "            0.00 MRU",
        "Courant: coupe      ",
        "Credit epuise       "]


def test_main_screen_open_with_no_reason_asks_for_the_reconnect_key():
    assert screen("main", supply="open", awaiting_key=True)[2:] == [
        "Courant: coupe      ",
        "Appuyer RECONNECT   "]


@pytest.mark.parametrize("kw, note", [
    ({"debt": 3151}, "Dette 31.51 MRU     "),
    ({"emergency": "taken", "emergency_owed": 2000, "debt": 3151}, "Urgence 20.00 MRU   "),
    ({"emergency": "taken"}, "Credit d'urgence    "),
    ({"emergency": "available"}, "EMERG=credit urgence"),
    ({"warnings": ["low_credit"]}, "Credit faible       "),
    ({"warnings": [["days_left", 3]]}, "Reste env. 3 jours  "),
    ({"warnings": ["low_credit", ["friendly", "11:00"]], "debt": 5}, "Periode de grace    "),
])
def test_main_screen_last_line_says_what_matters_most(kw, note):
    assert screen("main", **kw)[3] == note


# -- consumption ----------------------------------------------------------------------------------
def test_consumption_screen_shows_today_and_power():
    assert screen("consumption") == [
        "CONSOMMATION   14:05",
        "Jour       12.34 kWh",
        "Puissance     1234 W",
        "                    "]


def test_consumption_screen_adds_the_month_when_known():
    assert screen("consumption", month_wh=107500, p_w=123456)[2:] == [
        "Puissance   123.4 kW",
        "Mois      107.50 kWh"]


# -- supply ---------------------------------------------------------------------------------------
def test_supply_screen_closed():
    assert screen("supply") == [
        "ALIMENTATION        ",
        "Courant: en service ",
        "                    ",
        "                    "]


def test_supply_screen_gives_each_reason_in_words():
    assert screen("supply", supply="open", reasons=["OVER_POWER", "REMOTE"]) == [
        "ALIMENTATION        ",
        "Courant: coupe      ",
        "Puissance depassee  ",
        "Coupure a distance  "]


def test_supply_screen_counts_reasons_that_do_not_fit():
    assert screen("supply", supply="open", reasons=["TAMPER", "FAULT", "OVER_VOLTAGE", "SERVICE"])[2:] == [
        "Fraude detectee     ",
        "Defaut compteur   +2"]


def test_supply_screen_one_reason_held_while_key_awaited():
    assert screen("supply", supply="open", reasons=["UNDER_VOLTAGE"], awaiting_key=True)[2:] == [
        "Sous-tension        ",
        "Appuyer RECONNECT   "]


def test_supply_screen_waiting_for_the_key_only():
    assert screen("supply", supply="open", awaiting_key=True)[2:] == [
        "Appuyer RECONNECT   ",
        "pour retablir       "]


def test_supply_screen_unknown_reason_shown_by_name():
    assert screen("supply", supply="open", reasons=["NEW_REASON"])[2] == "NEW_REASON          "


# -- warnings, link, info -------------------------------------------------------------------------
def test_warnings_screen_lists_up_to_three():
    ws = ["low_credit", ["days_left", 1], ["friendly", "11:00"], "no_time"]
    assert screen("warnings", warnings=ws) == [
        "AVERTISSEMENTS      ",
        "Credit faible       ",
        "Reste env. 1 jour   ",
        "Grace jusqu'a 11:00 "]


def test_warnings_screen_less_than_a_day_and_plain_friendly():
    assert screen("warnings", warnings=[["days_left", 0], "friendly"])[1:3] == [
        "Reste < 1 jour      ",
        "Periode de grace    "]


def test_warnings_screen_with_none():
    assert screen("warnings")[1:] == ["Aucun               ", " " * 20, " " * 20]


def test_link_screen_shows_status_date_and_time():
    assert screen("link") == [
        "COMMUNICATION       ",
        "4G -71dBm MQTT      ",
        "25/11/2026 14:05    ",
        "                    "]


def test_link_screen_without_signal_or_time():
    assert screen("link", link="", time_valid=False)[1:3] == [
        "Pas de liaison      ",
        "Heure non reglee    "]


def test_link_text_is_folded_to_the_lcd_rom_and_cut_at_20_columns():
    assert screen("link", link="Réseau ~ très\\ faible signal")[1] == "Reseau ? tres? faibl"


def test_info_screen_money_and_kwh_modes():
    assert screen("info") == [
        "COMPTEUR            ",
        "No 01234567890      ",
        "Version 0.1.0       ",
        "Mode: argent MRU    "]
    assert screen("info", mode="kwh")[3] == "Mode: energie kWh   "


def test_arabic_language_still_draws_french_on_the_lcd():
    assert screen("main", language="ar") == screen("main", language="fr")


# -- entry, confirm -------------------------------------------------------------------------------
def test_emergency_confirm_view_with_and_without_amount():
    d, _, _ = make(emergency_amount=2000)
    d.confirm(True)
    assert d.render() == [
        "CREDIT D'URGENCE    ",
        "Prendre 20.00 MRU ? ",
        "ENTER = confirmer   ",
        "BACK = annuler      "]
    d.update({"emergency_amount": 123456789})
    assert d.render()[1] == "+1234567.89 MRU ?   "
    d.update({"emergency_amount": 0})
    assert d.render()[1] == "Prendre le credit ? "


# -- drawing only on change -----------------------------------------------------------------------
def test_show_called_once_and_again_only_when_text_changes():
    d, lcd, _ = make()
    assert len(lcd.shown) == 1 and lcd.last == d.render()
    d.update(snap())  # identical snapshot
    d.update(snap(time=T + 20))  # same minute
    d.update(snap(p_w=999))  # not on the main screen
    d.tick()
    assert len(lcd.shown) == 1
    d.update(snap(p_w=999, time=T + 40))  # next minute
    assert len(lcd.shown) == 2 and lcd.last[0] == "SOLDE          14:06"


def test_snapshot_lists_are_copied_so_in_place_changes_are_seen():
    s = snap(supply="open", reasons=["NO_CREDIT"])
    d, lcd, _ = make()
    d.update(s)
    s["reasons"].append("TAMPER")
    s["reasons"].remove("NO_CREDIT")
    d.update(s)
    assert lcd.last[3] == "Fraude detectee     "


def test_partial_snapshot_keeps_what_it_does_not_mention():
    d, lcd, _ = make()
    d.update({"credit": 500})
    assert lcd.last == ["SOLDE          14:05", "            5.00 MRU", "Courant: en service ", " " * 20]
    d.update({"time_valid": False})
    assert lcd.last[0] == "SOLDE          --:--"


# -- NEXT and rotation ----------------------------------------------------------------------------
def test_next_cycles_every_screen_and_back_to_main():
    d, lcd, _ = make()
    seen = []
    for _ in range(6):
        d.next()
        d.refresh()
        seen.append(lcd.last[0].strip())
    assert seen == ["CONSOMMATION   14:05", "ALIMENTATION", "AVERTISSEMENTS", "COMMUNICATION",
                    "COMPTEUR", "SOLDE          14:05"]


def rotation(n, **kw):
    d, lcd, clock = make({"rotate_s": 6}, **kw)
    tops = []
    for _ in range(n):
        clock.advance(6000)
        d.tick()
        tops.append(lcd.last[0][:6])
    return tops


def test_rotation_visits_main_and_consumption_when_all_is_well():
    assert rotation(4) == ["CONSOM", "SOLDE ", "CONSOM", "SOLDE "]


def test_rotation_adds_supply_and_warnings_when_they_matter():
    tops = rotation(4, supply="open", reasons=["NO_CREDIT"], warnings=["low_credit"])
    assert tops == ["CONSOM", "ALIMEN", "AVERTI", "SOLDE "]


def test_a_key_holds_the_rotation():
    d, lcd, clock = make({"rotate_s": 6, "hold_s": 30})
    d.next()
    d.touch()
    d.refresh()
    clock.advance(29999)
    d.tick()
    assert lcd.last[0].startswith("CONSOM")
    clock.advance(1)
    d.tick()
    assert lcd.last[0].startswith("SOLDE")  # supply closed, no warnings: back to main


def test_rotation_off():
    d, lcd, clock = make({"rotate_s": 0})
    clock.advance(600000)
    d.tick()
    assert len(lcd.shown) == 1


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        D.Display(RecordingLcd(), WrapClock(), {"overlay_s": 0})


# -- overlays ------------------------------------------------------------------------------------
def test_overlay_expires_after_overlay_s_across_the_ticks_wrap():
    d, lcd, clock = make({"overlay_s": 5})
    start = clock.ticks_ms()
    d.message(("used", None))
    assert lcd.last == ["CODE REFUSE         ", "Code deja utilise   ", " " * 20, " " * 20]
    d.tick()
    assert lcd.last[0] == "CODE REFUSE         "
    clock.advance(4999)
    d.tick()
    assert clock.ticks_ms() < start  # the ticks wrapped while the overlay was up
    assert lcd.last[0] == "CODE REFUSE         "
    clock.advance(1)
    d.tick()
    assert lcd.last[0] == "SOLDE          14:05"


def test_touch_dismisses_an_overlay():
    d, lcd, _ = make()
    d.message("crc_error")
    assert d.touch() is True
    d.refresh()
    assert lcd.last[0].startswith("SOLDE")
    assert d.touch() is False


@pytest.mark.parametrize("kw, result, lines", [
    ({"mode": "kwh", "credit": 20000}, ("accepted", 12300),
     ["CODE ACCEPTE", "+12.3 kWh", "", "Solde 20.00 kWh"]),
    ({}, ("accepted", 10000), ["CODE ACCEPTE", "+100.00 MRU", "", "Solde 12345.67 MRU"]),
    ({}, ("accepted", "Limite 5000 W"), ["CODE ACCEPTE", "Limite 5000 W", "", ""]),
    ({}, ("locked_out", 40), ["CLAVIER BLOQUE", "Attendre 40 s", "", ""]),
    ({}, ("locked_out", 1280), ["CLAVIER BLOQUE", "Attendre 22 min", "", ""]),
    ({}, ("old", None), ["CODE REFUSE", "Code trop ancien", "", ""]),
    ({}, ("key_expired", None), ["CODE REFUSE", "Cle expiree", "", ""]),
    ({}, ("format_error", None), ["CODE REFUSE", "Code invalide", "", ""]),
    ({}, ("key_change_waiting", None), ["CODE ACCEPTE", "Entrer le 2e code", "", ""]),
    ({}, ("granted", 2000), ["CREDIT D'URGENCE", "+20.00 MRU", "", "Solde 12345.67 MRU"]),
    ({}, ("already_taken", None), ["URGENCE REFUSEE", "Deja utilisee", "", ""]),
    ({}, ("credit_not_low", None), ["URGENCE REFUSEE", "Credit suffisant", "", ""]),
    ({}, True, ["COURANT RETABLI", "", "", ""]),
    ({}, False, ["RECONNEXION", "Impossible", "", ""]),
    ({}, ("reconnect_refused", "TAMPER"), ["RECONNEXION", "Fraude detectee", "", ""]),
    ({}, ("strange", None), ["STRANGE", "", "", ""]),
])
def test_result_messages(kw, result, lines):
    d, lcd, _ = make(**kw)
    d.message(result)
    assert lcd.last == ["%-20s" % x for x in lines]


def test_message_none_shows_nothing():
    d, lcd, _ = make()
    d.message(None)
    assert len(lcd.shown) == 1
