"""The keypad state machine: token entry of 20, 9 and 12 digits with grouping, BACK, timeouts,
ENTER, the emergency confirm flow, reconnect, NEXT, and a keypad that never blocks."""
import pytest

from ui import keypad as K
from ui.display import Display
from ui_fakes import KeyQueue, RecordingLcd, WrapClock

HINT = "ENTER=OK BACK=corr. "
MAIN = "SOLDE          --:--"


class Rig:
    def __init__(self, cfg=None, token_result=("used", None), emergency_result=("granted", 2000),
                 reconnect_result=True):
        self.clock = WrapClock()
        self.lcd = RecordingLcd()
        self.keys = KeyQueue()
        self.display = Display(self.lcd, self.clock, {"rotate_s": 0})
        self.display.update({"credit": 1000, "supply": "closed"})
        self.tokens, self.emergencies, self.reconnects = [], [], []
        self.token_result = token_result
        self.pad = K.Keypad(self.keys, self.clock, self.display, self._token, self._emergency,
                            self._reconnect, cfg)
        self.emergency_result = emergency_result
        self.reconnect_result = reconnect_result

    def _token(self, digits):
        self.tokens.append(digits)
        return self.token_result

    def _emergency(self):
        self.emergencies.append(1)
        return self.emergency_result

    def _reconnect(self):
        self.reconnects.append(1)
        return self.reconnect_result

    def type(self, *keys, gap_ms=1000):
        for k in keys:
            self.clock.advance(gap_ms)
            self.keys.push(k)
            self.pad.poll()

    @property
    def screen(self):
        return self.lcd.last


def test_twenty_digit_sts_token_grouped_in_fours_and_submitted():
    r = Rig(token_result=("accepted", 12300))
    r.type(*"12345678901234567890")
    assert r.screen == ["CODE DE RECHARGE  20", "1234 5678 9012 3456 ", "7890                ", HINT]
    r.type("ENTER")
    assert r.tokens == ["12345678901234567890"]
    assert r.screen[:2] == ["CODE ACCEPTE        ", "+123.00 MRU         "]
    assert r.pad.state == K.IDLE and r.pad.n == 0


def test_nine_digit_token_grouped_in_threes():
    r = Rig()
    r.type(*"123456789")
    assert r.screen == ["CODE DE RECHARGE   9", "123 456 789         ", " " * 20, HINT]
    r.type("ENTER")
    assert r.tokens == ["123456789"]


def test_twelve_digit_token_grouped_in_threes_then_regrouped_in_fours_at_thirteen():
    r = Rig()
    r.type(*"123456789012")
    assert r.screen[1] == "123 456 789 012     "
    r.type("3")
    assert r.screen[1] == "1234 5678 9012 3    "
    r.type("BACK", "ENTER")
    assert r.tokens == ["123456789012"]


def test_a_twenty_first_digit_is_ignored():
    r = Rig()
    r.type(*"123456789012345678901")
    r.type("ENTER")
    assert r.tokens == ["12345678901234567890"]


def test_back_deletes_the_last_digit():
    r = Rig()
    r.type(*"1234", "BACK", "BACK", "5")
    assert r.screen[:2] == ["CODE DE RECHARGE   3", "125                 "]


def test_back_on_the_last_digit_leaves_entry():
    r = Rig()
    r.type("7", "BACK")
    assert r.pad.state == K.IDLE and r.screen[0] == MAIN


def test_a_quick_run_of_backs_clears_everything():
    r = Rig()
    r.type(*"123456789")
    r.type("BACK", gap_ms=1000)
    r.type("BACK", "BACK", "BACK", gap_ms=200)  # a held key repeating: 4 in a row
    assert r.pad.n == 0 and r.pad.state == K.IDLE and r.screen[0] == MAIN


def test_three_quick_backs_only_delete_three():
    r = Rig()
    r.type(*"123456789")
    r.type("BACK", "BACK", "BACK", gap_ms=200)
    assert r.pad.n == 6 and r.screen[1] == "123 456             "


def test_slow_backs_never_clear_all():
    r = Rig()
    r.type(*"123456789")
    r.type("BACK", "BACK", "BACK", "BACK", "BACK", gap_ms=800)
    assert r.pad.n == 4


def test_entry_times_out_and_clears_across_the_ticks_wrap():
    r = Rig({"entry_timeout_s": 30})
    r.clock.ms = (1 << 31) - 20000  # the wait below straddles a ticks wrap
    r.type(*"1234")
    r.pad.tick()
    assert r.pad.n == 4
    r.clock.advance(29999)
    r.pad.tick()
    assert r.pad.n == 4
    r.clock.advance(1)
    r.pad.tick()
    assert r.pad.n == 0 and r.pad.state == K.IDLE and r.screen[0] == MAIN
    r.type("ENTER")
    assert r.tokens == []


def test_each_key_restarts_the_timeout():
    r = Rig({"entry_timeout_s": 30})
    for d in "123":
        r.type(d, gap_ms=20000)
        r.pad.tick()
    assert r.pad.n == 3


def test_enter_with_no_digits_does_nothing():
    r = Rig()
    r.type("ENTER")
    assert r.tokens == [] and len(r.lcd.shown) == 1


def test_emergency_needs_enter_to_confirm():
    r = Rig()
    r.type("EMERG")
    assert r.pad.state == K.CONFIRM and r.screen[0] == "CREDIT D'URGENCE    "
    assert r.emergencies == []
    r.type("ENTER")
    assert r.emergencies == [1]
    assert r.screen[:2] == ["CREDIT D'URGENCE    ", "+20.00 MRU          "]
    assert r.pad.state == K.IDLE


def test_emergency_cancelled_by_back_or_timeout():
    r = Rig({"entry_timeout_s": 10})
    r.type("EMERG", "BACK")
    assert r.pad.state == K.IDLE and r.screen[0] == MAIN
    r.type("EMERG")
    r.clock.advance(10000)
    r.pad.tick()
    assert r.pad.state == K.IDLE and r.screen[0] == MAIN
    r.type("ENTER")
    assert r.emergencies == []


def test_a_digit_during_confirm_cancels_and_starts_an_entry():
    r = Rig()
    r.type("EMERG", "4")
    assert r.pad.state == K.ENTRY and r.screen[1] == "4                   "
    assert r.emergencies == []


def test_emergency_refusal_is_shown():
    r = Rig(emergency_result=("already_taken", None))
    r.type("EMERG", "ENTER")
    assert r.screen[:2] == ["URGENCE REFUSEE     ", "Deja utilisee       "]


def test_emergency_ignored_during_entry():
    r = Rig()
    r.type("1", "2", "EMERG", "ENTER")
    assert r.emergencies == [] and r.tokens == ["12"]


def test_reconnect_calls_back_and_shows_the_result():
    r = Rig()
    r.type("RECONNECT")
    assert r.reconnects == [1] and r.screen[0] == "COURANT RETABLI     "
    r.reconnect_result = ("reconnect_refused", "NO_CREDIT")
    r.type("RECONNECT")
    assert r.screen[:2] == ["RECONNEXION         ", "Credit epuise       "]


def test_reconnect_during_entry_keeps_the_digits():
    r = Rig()
    r.type("1", "2", "RECONNECT")
    assert r.reconnects == [1] and r.screen[0] == "COURANT RETABLI     "
    r.type("BACK")  # only dismisses the message
    assert r.screen[:2] == ["CODE DE RECHARGE   2", "12                  "]
    r.type("3", "ENTER")
    assert r.tokens == ["123"]


def test_next_cycles_screens_when_idle_and_is_ignored_during_entry():
    r = Rig()
    r.type("NEXT")
    assert r.screen[0].startswith("CONSOMMATION")
    r.type("BACK")
    assert r.screen[0] == MAIN
    r.type("5", "NEXT")
    assert r.pad.n == 1 and r.screen[0] == "CODE DE RECHARGE   1"


def test_next_after_a_message_only_dismisses_it():
    r = Rig()
    r.type("RECONNECT", "NEXT")
    assert r.screen[0] == MAIN
    r.type("NEXT")
    assert r.screen[0].startswith("CONSOMMATION")


def test_a_digit_after_a_message_dismisses_it_and_starts_entry():
    r = Rig()
    r.type("RECONNECT", "9")
    assert r.screen[:2] == ["CODE DE RECHARGE   1", "9                   "]


def test_message_expires_on_display_tick():
    r = Rig()
    r.type(*"111", "ENTER")
    r.clock.advance(5000)
    r.display.tick()
    assert r.screen[0] == MAIN


def test_poll_drains_every_waiting_key_but_never_more_than_32():
    r = Rig()
    r.keys.push(*"1234")
    assert r.pad.poll() == 4 and r.pad.n == 4
    r.keys.push(*("5" * 40))
    assert r.pad.poll() == 32
    assert len(r.keys.keys) == 8


def test_one_key_draws_the_screen_once():
    r = Rig()
    n = len(r.lcd.shown)
    r.type(*"12", "ENTER")
    assert len(r.lcd.shown) == n + 3  # "1", "12", then the message (no flash of the main screen)


def test_unknown_keys_are_ignored():
    r = Rig()
    r.type("*", "F1")
    assert r.pad.state == K.IDLE and len(r.lcd.shown) == 1


def test_a_failing_callback_shows_an_error_and_is_reported():
    r = Rig()
    r.pad._on_token = lambda digits: 1 // 0
    r.type("1")
    with pytest.raises(ZeroDivisionError):
        r.type("ENTER")
    assert r.screen[:2] == ["ERREUR              ", "Reessayer           "]
    assert r.pad.state == K.IDLE and r.pad.n == 0


def test_bad_keypad_config_is_refused():
    with pytest.raises(ValueError):
        Rig({"entry_timeout_s": 1})
