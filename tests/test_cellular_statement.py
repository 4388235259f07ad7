"""The cellular side's statement hand-over, under CPython with fakes: queued once to the head-end,
texted from the statement hour, marked sent only when the outbox has drained, and a link started after
a month was closed does not send that old month."""
import calendar
import sys

from host_tools.paths import FIRMWARE

sys.path.insert(0, str(FIRMWARE))
sys.path.insert(0, str(FIRMWARE.parent / "tests" / "shims"))
from comms import cellular  # noqa: E402
from store.records import StoreMissing  # noqa: E402
from fakeclock import FakeClock  # noqa: E402

JAN = 2026 * 12 + 0


class Store:
    def __init__(self):
        self.recs = {}

    def load(self, name):
        if name not in self.recs:
            raise StoreMissing(name)
        return self.recs[name]

    def commit(self, name, obj):
        self.recs[name] = dict(obj)


class Sms:
    customer = "+22236000001"

    def __init__(self):
        self.outbox = []
        self.sent = []

    def notify(self, kind, **v):
        self.sent.append((kind, v))
        self.outbox.append("part")
        return True


class Uplink:
    def __init__(self):
        self.inner = []

    def send_inner(self, inner):
        self.inner.append(inner)


class Link:
    def __init__(self):
        self.sms = Sms()
        self.uplink = Uplink()


class Prepaid:
    statement = None


class Events:
    def __init__(self):
        self.seen = []

    def emit(self, kind, data):
        self.seen.append((kind, data))


class App:
    def __init__(self, t):
        self.store = Store()
        self.clock = FakeClock(epoch=t)
        self.prepaid = Prepaid()
        self.events = Events()


def make(app, hour=9):
    """A Cellular without its link stack: the statement hand-over runs as in the meter."""
    c = cellular.Cellular.__new__(cellular.Cellular)
    c.store, c.clock, c.prepaid, c.emit = app.store, app.clock, app.prepaid, app.events.emit
    c.link = Link()
    c.statement_hour = hour
    c._load_stmt()
    return c


def test_handed_over_once_texted_at_the_hour_marked_when_drained():
    app = App(calendar.timegm((2026, 2, 1, 0, 0, 5)))
    c = make(app)
    app.prepaid.statement = [JAN, 1234, 617, 500, 9000]
    c._statement()
    c._statement()
    assert c.link.uplink.inner == [{"t": "statement", "month": "2026-01", "import_wh": 1234,
                                                     "cost": 617, "topups": 500, "credit": 9000}]
    assert c.link.sms.sent == []                                  # 00:00: not before 09:00
    app.clock.set_time(calendar.timegm((2026, 2, 1, 9, 0, 0)))
    c._statement()
    c._statement()
    assert c.link.sms.sent == [("statement", {"month": "01/2026", "wh": 1234, "cost": 617, "topups": 500,
                                              "credit": 9000})]
    assert app.store.recs["stmt_out"] == {"up": JAN, "sms": 0}  # in the outbox, not yet sent
    c.link.sms.outbox = []                                        # the modem took it
    c._statement()
    assert app.store.recs["stmt_out"] == {"up": JAN, "sms": JAN}
    c2 = make(app)                                                # a reboot: nothing again
    c2._statement()
    assert c2.link.uplink.inner == [] and c2.link.sms.sent == []


def test_a_reboot_before_the_outbox_drained_texts_it_again():
    app = App(calendar.timegm((2026, 2, 1, 10, 0, 0)))
    c = make(app)
    app.prepaid.statement = [JAN, 1, 1, 0, 1]
    c._statement()
    assert len(c.link.sms.sent) == 1
    c2 = make(app)
    c2._statement()
    assert c2.link.uplink.inner == [] and len(c2.link.sms.sent) == 1    # queued before; texted again


def test_a_link_started_after_the_month_was_closed_does_not_send_it():
    app = App(calendar.timegm((2026, 3, 10, 12, 0, 0)))
    app.prepaid.statement = [JAN + 1, 1, 1, 0, 1]               # February, closed before provisioning
    c = make(app)
    c._statement()
    assert c.link.uplink.inner == [] and c.link.sms.sent == []
    app.prepaid.statement = [JAN + 2, 5, 5, 0, 1]               # March closes: that one is news
    app.clock.set_time(calendar.timegm((2026, 4, 1, 9, 30, 0)))
    c._statement()
    assert [i["month"] for i in c.link.uplink.inner] == ["2026-03"] and len(c.link.sms.sent) == 1
