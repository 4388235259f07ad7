"""Realtime simulated meter for people and host tools (`meterkit sim start`, `make demo`): the service
port on a pty, and a live view of what the meter reports next to the world's truth."""
import json
import os
import signal
import sys
import time
import tty

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from host_tools.sim.esp32.runner import SimMeter


class Stop(Exception):
    pass


def open_pty(link=None):
    """A pty pair for the service port; returns (master_fd, slave_path). `link` makes a stable symlink."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    if link:
        try:
            os.unlink(link)
        except FileNotFoundError:
            pass
        os.symlink(path, link)
        path = link
    return master, slave, path


class LiveView:
    """Polls the meter through the runner's own service requests (kept off the pty) and renders."""

    def __init__(self, meter, refresh_s=0.5):
        self.m = meter
        self.refresh_s = refresh_s
        self.last = 0.0
        self.pending = None
        self.totals = None
        self.counts = {}
        self.pending_ev = None
        self.pending_cr = None
        self.credit = {}

    def poll(self):
        svc = self.m.service
        if self.pending and self.pending in svc.replies:
            self.totals = svc.replies.pop(self.pending)
            self.pending = None
        if self.pending_ev and self.pending_ev in svc.replies:
            self.counts = svc.replies.pop(self.pending_ev).get("counts", {})
            self.pending_ev = None
        if self.pending_cr and self.pending_cr in svc.replies:
            self.credit = svc.replies.pop(self.pending_cr)
            self.pending_cr = None
        now = time.monotonic()
        if now - self.last >= self.refresh_s and not self.pending and not svc.pty_partial:
            self.last = now
            self.pending = svc.request("totals", fresh=False)
            self.pending_ev = svc.request("events", since=10 ** 9)
            self.pending_cr = svc.request("credit")

    def render(self):
        w = self.m.world
        t = Table(show_header=True, header_style="bold", expand=False)
        for col in ("", "meter", "truth"):
            t.add_column(col, justify="right")
        r = (self.totals or {}).get("readings", {})
        tot = self.totals or {}
        snap = w.snapshot()
        amps = 0.0
        if snap["volts"] > 0 and snap["load_pf"]:
            amps = abs(w.supply_power_w()) / (snap["volts"] * abs(snap["load_pf"]))
        t.add_row("voltage V", _f(r.get("urms_cv"), 100, 2), "%.2f" % snap["volts"])
        t.add_row("current A", _f(r.get("irms_ma"), 1000, 3), "%.3f" % amps)
        t.add_row("power W", str(r.get("p_w", "-")), "%.1f" % w.supply_power_w())
        t.add_row("power factor", _f(r.get("pf_milli"), 1000, 3), "%.3f" % snap["load_pf"])
        t.add_row("frequency Hz", _f(r.get("freq_chz"), 100, 2), "%.2f" % snap["freq"])
        imp = None
        if tot:
            imp = tot["import_wh"] + tot["import_rem"] / tot["rem_den"]
        t.add_row("import kWh", "%.4f" % (imp / 1000) if imp is not None else "-",
                  "%.4f" % (w.true_import_wh / 1000))
        t.add_row("chip", r.get("health", "-"), "relay closed" if w.relay_closed else "relay OPEN")
        cr = self.credit
        if cr:
            from host_tools import render
            t.add_row("credit", render.money(cr.get("credit", 0)), "debt " + render.money(cr.get("debt", 0)))
            t.add_row("supply", cr.get("supply", "-"), cr.get("reasons") or "")
        day = w.now_ms // 86400000
        hms = time.strftime("%H:%M:%S", time.gmtime((w.now_ms // 1000) % 86400))
        head = "simulated day %d %s  |  seed %d  |  boots %d" % (day, hms, self.m.seed, self.m.boots)
        ev = ", ".join("%s %d" % kv for kv in sorted(self.counts.items())) or "none"
        # Plain text, not rich markup: a meter's display, paths and the key help may hold brackets.
        parts = [Text(self.help)] if self.help else []      # first: a short terminal crops the bottom
        parts += [t, Text("events: " + ev)]
        if self.m.display_lines:
            parts.append(Panel(Text("\n".join(self.m.display_lines)), title="meter display", expand=False))
        if self.m.service.pty_fd is not None:
            parts.append(Text("service port: %s" % self.pty_path))
        if self.extra:
            parts.append(Text("meters:\n" + "\n".join(self.extra)))
        return Panel(Group(*parts), title=head, expand=False)

    pty_path = None
    extra = ()
    help = None


def _f(v, div, nd):
    return "-" if v is None else ("%." + str(nd) + "f") % (v / div)


# Keys a person types in the live view -> the meter's keypad keys (ui/keypad.py).
KEYMAP = {"\r": "ENTER", "\n": "ENTER", "\x7f": "BACK", "\x08": "BACK", "e": "EMERG", "E": "EMERG",
          "r": "RECONNECT", "R": "RECONNECT", "n": "NEXT", "N": "NEXT", " ": "NEXT", "\t": "NEXT"}
KEY_HELP = "keypad: digits, Enter, Backspace, e emergency, r reconnect, n next screen; Ctrl-C stops"
KEY_HELP_MANY = "keypad: digits, Enter, Backspace, e, r, n; [ ] other meter; Ctrl-C stops"
SELECT = {"[": -1, "]": 1}       # with several meters: which one the keypad (and the view) is on


def keys_from_text(text):
    """The keypad keys for what was typed (digits as themselves; unknown characters ignored)."""
    out = []
    for ch in text:
        if "0" <= ch <= "9":
            out.append(ch)
        elif ch in KEYMAP:
            out.append(KEYMAP[ch])
        elif ch in SELECT:
            out.append(ch)
    return out


class KeyReader:
    """Reads what a person types (stdin in cbreak mode when it is a terminal; a pipe works too)."""

    def __init__(self, fd):
        self.fd = fd
        self.saved = None
        if os.isatty(fd):
            import termios
            self.saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)

    def read(self):
        import select
        keys = []
        while select.select([self.fd], [], [], 0)[0]:
            try:
                data = os.read(self.fd, 256)
            except OSError:
                break
            if not data:
                self.fd = None     # end of input: stop reading, keep the meter running
                break
            keys += keys_from_text(data.decode("utf-8", "replace"))
            if self.fd is None:
                break
        return keys

    def close(self):
        if self.saved is not None:
            import termios
            termios.tcsetattr(self.fd if self.fd is not None else 0, termios.TCSADRAIN, self.saved)


WARMUP_S = 7


def _drain_pty(meter):
    """Hand a meter what its pty holds now. A meter reads its pty while it waits for the wall clock;
    with several meters served in turn, the later ones are often not waiting at all (the others'
    waits let the clock run on), so their service ports are read here."""
    import select
    fd = meter.service.pty_fd
    while fd is not None and select.select([fd], [], [], 0)[0]:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        if not data:
            return
        meter.service.from_pty(data)
JOIN_TIMEOUT_S = 60
JOIN_SPEED = 10


def link_name(link, i, n):
    """The --link path for meter i of n: the path itself for one meter, else NAME-<i+1>.SUFFIX."""
    if not link or n == 1:
        return link
    root, ext = os.path.splitext(link)
    return "%s-%d%s" % (root, i + 1, ext)


def serve(seed=1, profile="household", afe="typical", grid="stable", speed=1.0, as_json=False,
          link=None, period_s=1, days=None, script=None, quiet=False, settings=None, out=sys.stdout,
          workdir=None, meters=1, join=None, keys_fd=None, **meter_args):
    """Run `meters` meters in realtime until interrupted (or for `days` simulated days); `join` (a
    sim.join.HeadendJoin) puts them on a head-end. Returns (the first meter's final totals, meter)."""
    from host_tools.sim.run import METERING_PREPAID
    st = {"meter_period_s": period_s, "prepaid": METERING_PREPAID}
    st.update(settings or {})
    ms, ptys, views = [], [], []
    stop = {"flag": False}

    def _stop(*_):
        stop["flag"] = True

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    live = None
    bench = None
    keys = None
    try:
        for i in range(meters):
            wd = None if workdir is None else os.path.join(workdir, "meter-%d" % (i + 1) if meters > 1 else "")
            m = SimMeter(seed=seed + i, profile=profile, afe=afe, grid=grid, settings=st, realtime=True,
                         speed=speed, workdir=wd, **meter_args)
            ms.append(m)
            master, slave, path = open_pty(link_name(link, i, meters))
            ptys.append((master, slave, path))
            m.service.pty_fd = master
            v = LiveView(m)
            v.pty_path = path
            views.append(v)
        m = ms[0]
        view = views[0]
        end_ms = int(days * 86400000) if days else None
        if script:
            script(m)
        ids = [None] * meters
        if join is not None:
            join.prepare(meters)
        for i, mi in enumerate(ms):
            mi.boot()
            if mi.modem is not None:
                # A board on the desk has been powered some seconds before anyone talks to it: run
                # them in lockstep, so its modem (3-6 s to boot) answers the factory self-test.
                mi.realtime = False
                mi.run_for(WARMUP_S)
                mi.realtime = True
                mi._wall0 = None
            if join is not None:
                mi.realtime = False
                ids[i] = join.join(mi, i)
                mi.realtime = True
                mi._wall0 = None
            mi.request("ping")
        if join is not None:
            # Ready means on the head-end: serve in realtime until the broker has seen every meter
            # connect (a top-up sent sooner would wait for the head-end's retry).
            # The modems' boot and registration (seconds of virtual time) run JOIN_SPEED times faster.
            deadline = time.monotonic() + JOIN_TIMEOUT_S
            for mi in ms:
                mi.speed, mi._wall0 = max(speed, JOIN_SPEED), None
            while not join.online(ids) and time.monotonic() < deadline and not stop["flag"]:
                for mi in ms:
                    mi._serve(stop_at_ms=mi.world.now_ms + 200)
            for mi in ms:
                mi.speed, mi._wall0 = speed, None
            if not join.online(ids):
                sys.stderr.write("meterkit sim: warning: not every meter is online after %d s; is `meterkit "
                                 "headend serve` running with this database?\n" % JOIN_TIMEOUT_S)
        ping = m.request("ping")
        try:
            from host_tools.calibrate.bench.sim import BenchServer
            bench = BenchServer(m)
            m.wake_fds = bench.sockets     # a bench request is answered at once, not at the chunk's end
        except ImportError:
            pass
        if as_json:
            info = {"service_port": ptys[0][2], "seed": seed, "board": m.board, "firmware": ping.get("version"),
                    "pid": os.getpid()}
            if ids[0]:
                info["meter_id"] = ids[0]
            if meters > 1 or join is not None:
                info["meters"] = [{"service_port": ptys[i][2], "meter_id": ids[i], "seed": seed + i}
                                  for i in range(meters)]
            if join is not None:
                info["broker"] = "mqtt://%s:%d" % join.broker
            if bench is not None:
                info["bench"] = bench.address
            out.write(json.dumps(info) + "\n")
            out.flush()
        elif not quiet:
            def listing(sel):
                return ["%s  %s%s" % (ptys[i][2], ids[i] or "", "  (keypad)" if i == sel else "")
                        for i in range(meters)] if meters > 1 or join is not None else []
            for v in views:
                v.extra = listing(views.index(v))
            live = Live(view.render(), refresh_per_second=4, transient=False)
            live.start()
        if keys_fd is not None:
            keys = KeyReader(keys_fd)
            for v in views:
                v.help = KEY_HELP_MANY if meters > 1 else KEY_HELP
        sel = {"i": 0}

        def check_stop():
            if stop["flag"]:
                raise Stop()
            for v in views:
                v.poll()
            if keys is not None and keys.fd is not None:
                for k in keys.read():
                    if k in SELECT:
                        sel["i"] = (sel["i"] + SELECT[k]) % meters
                    else:
                        ms[sel["i"]].press(k)

        for mi in ms:
            mi.tick_hook = check_stop
        # Serve in short chunks of virtual time; between chunks the firmware waits on a clean
        # ADVANCE, so a bench request may run the meter in lockstep (fast) before realtime resumes.
        chunk_ms = max(50, int(100 * speed))
        try:
            while True:
                if end_ms is not None and m.world.now_ms >= end_ms:
                    break
                for mi in ms:
                    nxt = mi.world.now_ms + chunk_ms
                    if end_ms is not None:
                        nxt = min(nxt, end_ms)
                    if meters > 1:
                        _drain_pty(mi)
                    mi._serve(stop_at_ms=nxt)
                check_stop()
                if bench is not None:
                    m.realtime = False
                    try:
                        bench.poll()
                    finally:
                        m.realtime = True
                        m._wall0 = None      # re-anchor pacing after any lockstep burst
                if live:
                    live.update(views[sel["i"]].render())
        except Stop:
            pass
        m.realtime = False
        m.leave_repl()  # a board left at the REPL is reset to read its totals
        final = m.request("totals")
        final["events"] = m.request("events").get("counts", {})
        final["credit"] = m.request("credit")
        view.totals = final
        if live:
            live.update(view.render())
        return final, m
    finally:
        if live:
            live.stop()
        if keys is not None:
            keys.close()
        if bench is not None:
            try:
                bench.close()
            except Exception:
                pass
        for s, h in old.items():
            signal.signal(s, h)
        for mi in ms:
            mi.close()
        if join is not None:
            join.close()
        for i, (master, slave, _) in enumerate(ptys):
            os.close(master)
            os.close(slave)
            ln = link_name(link, i, meters)
            if ln:
                try:
                    os.unlink(ln)
                except OSError:
                    pass
