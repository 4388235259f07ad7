"""The simulated world, and the time master: grid, household load, analog front end and metering chip,
advanced in integer milliseconds. Truth (the energy that really flowed) is integrated here from the
physical signals, independently of anything the firmware does."""
import math
import random

from host_tools.sim.world.afe import FrontEnd
from host_tools.sim.world import chips
from host_tools.sim.world.grid import Grid
from host_tools.sim.world.loads import LoadProfile

DAY_S = 86400
# Timestamps the world starts at by default: 2026-01-05 00:00 UTC (a Monday).
DEFAULT_EPOCH = 1767571200


def _named_or_file(cls, spec, seed, *extra):
    """A profile given as a name, a JSON path, or a dict."""
    if isinstance(spec, dict) or (isinstance(spec, str) and (spec.endswith(".json") or "/" in spec)):
        return cls.from_json(spec, seed, *extra)
    return cls.named(spec, seed, *extra)


class World:
    def __init__(self, board_info, seed=1, profile="household", afe="typical", grid="stable",
                 epoch=DEFAULT_EPOCH):
        self.seed = seed
        self.board_info = board_info
        self.epoch = epoch
        met = board_info["metering"]
        design = dict(met["front_end"])
        design.update({k: met[k] for k in ("un_v", "ib_a", "imax_a", "f_hz")})
        self.loads = _named_or_file(LoadProfile, profile, seed)
        self.grid = _named_or_file(Grid, grid, seed + 1)
        self.afe = _named_or_file(FrontEnd, afe, seed + 2, design)
        self.chip_name = met.get("chip", "atm90e26")
        self.chip = chips.make(self.chip_name, random.Random(seed * 1000003 + 3))
        self.now_ms = 0
        self.true_import_wh = 0.0
        self.true_export_wh = 0.0
        self.relay_closed = True
        self.relay_fault = None          # None, "stuck" (the contact does not move), "welded" (stays closed)
        self.relay_moves = 0
        self.bench = None               # a calibration bench may drive the signals instead of the loads
        self.bypass = 0.0               # tamper: share of the load current in a wire around the line terminals
        self.line_reversed = False      # tamper: line terminals swapped (the shunt sees the current backwards)
        # Physical state now.
        self.volts = 0.0
        self.freq = 50.0
        self._grid_on = True
        self.forced_off = False          # an outage ordered by a test or a scenario
        self.load_w = 0.0
        self.load_pf = 1.0
        self._changes = []              # pending (t_ms, kind, values) within the fetched window
        self._window_end_ms = 0
        self._agenda = []               # (t_ms, callable) scheduled actions (faults, scripted input)
        self._fetch_window()
        self._apply_due_changes()
        self._update_inputs()

    # -- the timeline ----------------------------------------------------------------------------
    def _fetch_window(self):
        t0 = self._window_end_ms // 1000
        t1 = t0 + DAY_S
        ch = []
        for t, w, pf in self.loads.segments(t0, t1):
            ch.append((int(round(t * 1000)), 0, (w, pf)))
        for t, v, f, on in self.grid.segments(t0, t1):
            ch.append((int(round(t * 1000)), 1, (v, f, on)))
        ch.sort(key=lambda c: (c[0], c[1]))
        self._changes.extend(ch)
        self._window_end_ms = t1 * 1000

    def _apply_due_changes(self):
        ch = self._changes
        i = 0
        while i < len(ch) and ch[i][0] <= self.now_ms:
            _, kind, vals = ch[i]
            if kind == 0:
                self.load_w, self.load_pf = vals
            else:
                self.volts, self.freq, self._grid_on = vals
            i += 1
        if i:
            del ch[:i]

    def _next_change_ms(self):
        while not self._changes:
            self._fetch_window()
        t = self._changes[0][0]
        if self._agenda and self._agenda[0][0] < t:
            t = self._agenda[0][0]
        return t

    @property
    def grid_on(self):
        return self._grid_on and not self.forced_off

    def outage(self, t_ms, duration_ms):
        """Cut the supply (the meter's own power too) from t_ms for duration_ms."""
        def off(w):
            w.forced_off = True

        def on(w):
            w.forced_off = False
        self.schedule(t_ms, off)
        self.schedule(t_ms + duration_ms, on)

    def schedule(self, t_ms, action):
        """Run action(world) when virtual time reaches t_ms."""
        self._agenda.append((t_ms, action))
        self._agenda.sort(key=lambda a: a[0])

    def next_agenda_ms(self):
        return self._agenda[0][0] if self._agenda else None

    # -- physics ---------------------------------------------------------------------------------
    def supply_power_w(self):
        """The power actually flowing through the meter now (W; negative = export)."""
        if self.bench is not None:
            return self.bench.power_w()
        if not (self.grid_on and self.relay_closed):
            return 0.0
        return self.load_w

    def _update_inputs(self):
        if self.bench is not None:
            volts, amps, phi, freq = self.bench.signals()
        else:
            volts = self.volts if self.grid_on else 0.0
            freq = self.freq
            w = self.supply_power_w()
            pf = self.load_pf if self.load_pf else 1.0
            apf = min(1.0, abs(pf))
            amps = abs(w) / (volts * apf) if volts > 0 and w else 0.0
            phi = math.acos(apf) * (1 if pf >= 0 else -1)
            if w < 0:
                phi += math.pi
        line = amps * (1.0 - self.bypass)
        if self.line_reversed:
            line = -line
        v_mv, i_mv, phi_pin, f, n_mv, n_phi = self.afe.pins(volts, line, phi, freq, amps)
        self.chip.set_inputs(v_mv, i_mv, phi_pin, f, n_mv, n_phi)

    def _integrate(self, dt_ms):
        if dt_ms <= 0:
            return
        p = self.supply_power_w()
        if p > 0:
            self.true_import_wh += p * dt_ms / 3600000.0
        elif p < 0:
            self.true_export_wh -= p * dt_ms / 3600000.0
        self.chip.advance(dt_ms / 1000.0)

    def advance_to(self, until_ms, stop_on_power=False):
        """Move virtual time to until_ms, applying every change and scheduled action on the way.
        With stop_on_power, return at the instant the grid goes off or comes back."""
        while self.now_ms < until_ms:
            nxt = self._next_change_ms()
            step_to = until_ms if nxt > until_ms else nxt
            self._integrate(step_to - self.now_ms)
            self.now_ms = step_to
            if step_to == nxt:
                was = self.grid_on
                self._apply_due_changes()
                self._run_agenda()
                self._update_inputs()
                if stop_on_power and self.grid_on != was:
                    return
        self._run_agenda()

    def _run_agenda(self):
        changed = False
        while self._agenda and self._agenda[0][0] <= self.now_ms:
            _, action = self._agenda.pop(0)
            action(self)
            changed = True
        if changed:
            self._update_inputs()

    def set_relay(self, closed):
        self.relay_closed = bool(closed)
        self._update_inputs()

    def pulse_relay(self, close):
        """A coil pulse on the latching relay: the contact moves unless it is stuck or welded shut."""
        if self.relay_fault == "stuck" or (self.relay_fault == "welded" and not close):
            return
        if self.relay_closed != bool(close):
            self.relay_moves += 1
        self.set_relay(close)

    # -- faults on demand ------------------------------------------------------------------------
    def tamper(self, bypass=None, line_reversed=None):
        """Someone at the meter: `bypass` (0..1) of the load current in a wire around the line
        terminals (the neutral CT still sees it all); `line_reversed` swaps the line terminals.
        The household's true energy is unchanged: what the meter misses is what the tamper steals."""
        if bypass is not None:
            if not 0.0 <= bypass <= 1.0:
                raise ValueError("bypass must be within 0..1")
            self.bypass = float(bypass)
        if line_reversed is not None:
            self.line_reversed = bool(line_reversed)
        self._update_inputs()

    def chip_fault(self, kind):
        """kind: None (healthy), "silent", "garbage", or "reset" (the chip's power-on reset)."""
        if kind == "reset":
            self.chip.power_on_reset()
        else:
            self.chip.set_fault(kind)

    def snapshot(self):
        return {"t_ms": self.now_ms, "volts": self.volts if self.grid_on else 0.0, "freq": self.freq,
                "grid_on": self.grid_on, "load_w": self.load_w, "load_pf": self.load_pf,
                "relay_closed": self.relay_closed, "true_import_wh": self.true_import_wh,
                "true_export_wh": self.true_export_wh}
