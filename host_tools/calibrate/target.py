"""The meter under calibration as the lab sees it: its service commands (cal_get, cal_set, raw_read,
raw_write), averaged register readings with their sub-LSB fraction, and the test-output mode.

`service` is anything with `call(cmd, **args) -> reply dict` that raises DeviceError on an error
reply: `host_tools.device.client.ServiceClient` on a port, or `SimService` for an in-process
simulated meter."""
from host_tools.calibrate import formulas as F
from host_tools.errors import DeviceError

# Register addresses read during calibration (never the clear-on-read energy registers).
REG = {"Urms": 0x49, "Irms": 0x48, "Pmean": 0x4A, "Qmean": 0x4B,
       "Irms2": 0x68, "Pmean2": 0x6A, "Qmean2": 0x6B}
_SIGNED = ("Pmean", "Qmean", "Pmean2", "Qmean2")
# The reference quantity each RMS reading is compared with when checking that a point has settled.
_REF_OF = {"Urms": "volts", "Irms": "amps", "Irms2": "amps"}
_LSB = 0x08
_SMALLPMOD = 0x04
_SMALLPMOD_ON = 0xA987


class SettleError(DeviceError):
    """Readings that keep moving: the point did not settle."""


class SimService:
    """call() into an in-process SimMeter (lockstep), shaped like ServiceClient.call()."""

    def __init__(self, meter):
        self.meter = meter

    def call(self, cmd, timeout=None, **args):
        reply = self.meter.request(cmd, **args)
        if not reply.get("ok"):
            raise DeviceError("meter refused %r: %s" % (cmd, reply.get("error")),
                              hint="see the meter's service protocol")
        return reply


class MeterUnderTest:
    def __init__(self, service):
        self.service = service
        self.design = None
        self.cal = None
        self.chip = None

    def call(self, cmd, **args):
        return self.service.call(cmd, **args)

    def identity(self):
        """What the meter says about itself: board, firmware version, meter id/serial if any."""
        ping = self.call("ping")
        ident = {"board": ping.get("board"), "firmware": ping.get("version")}
        try:
            more = self.call("identity")          # provisioned meters: meter id, serial, PAN
        except DeviceError:
            more = {}                             # older firmware, or not allowed: ping is enough
        for key in ("meter_id", "serial", "pan"):
            if more.get(key) or ping.get(key):
                ident[key] = more.get(key) or ping.get(key)
        return ident

    def cal_get(self):
        r = self.call("cal_get")
        self.chip = r.get("chip") or "atm90e26"
        self.cal = dict(r["cal"])
        self.design = dict(r["design"])
        return self.cal, self.design

    def cal_set(self, values, persist=True):
        """Write calibration registers; the meter restarts its chip with them and, with persist,
        stores them in its flash (reloaded at boot)."""
        mask = 0xFFFF if self.chip in (None, "atm90e26") else -1       # the ATM90E26's registers are 16-bit
        r = self.call("cal_set", cal={k: int(v) & mask for k, v in values.items()}, persist=bool(persist))
        if isinstance(r.get("cal"), dict):
            self.cal = dict(r["cal"])
        else:
            self.cal.update(values)
        health = r.get("health")
        if health not in (None, "ok"):
            raise DeviceError("the meter's chip reports %r after cal_set" % health,
                              hint="the chip did not accept the calibration; check its checksums and the bus")
        return r

    def raw_read(self, regs):
        return self.call("raw_read", regs=list(regs))["values"]

    def small_power_mode(self, on):
        self.call("raw_write", reg=_SMALLPMOD, value=_SMALLPMOD_ON if on else 0)

    def sample(self, bench, names, n=8, every_s=0.1, tolerance=None, max_n=None):
        """Average the named readings over n samples `every_s` apart, each with its LSB fraction,
        and the reference standard over the same time. Returns (means, reference dict).
        With a relative `tolerance`, the RMS readings are compared with the reference sample by
        sample (which cancels the source's own wander): while the ratio moves by more than that
        between the first and the second half, sampling continues up to max_n; a ratio that never
        settles raises SettleError."""
        regs = []
        for name in names:
            regs += [REG[name], _LSB]
        rows, refs = [], []
        limit = max(n, max_n or n)
        taken = 0
        while True:
            taken += 1
            refs.append(bench.reference(every_s))
            vals = self.raw_read(regs)
            rows.append([F.with_fraction(vals[2 * k], vals[2 * k + 1], name in _SIGNED)
                         for k, name in enumerate(names)])
            if len(rows) < n:
                continue
            moving = self._moving(names, rows, refs, tolerance) if tolerance else []
            if not moving:
                break
            if taken >= limit:
                raise SettleError("readings did not settle after %d samples: %s" % (taken, "; ".join(moving)),
                                  hint="the meter's readings keep moving against the reference: check the "
                                       "source, the connections and the meter's chip")
            # Keep the most recent samples only: the point may still have been settling.
            if len(rows) >= 2 * n:
                del rows[0], refs[0]
        means = [sum(r[k] for r in rows) / len(rows) for k in range(len(names))]
        ref = {}
        for key in ("volts", "amps", "watts", "vars", "freq_hz"):
            ref[key] = sum(r[key] for r in refs) / len(refs)
        return dict(zip(names, means)), ref

    @staticmethod
    def _moving(names, rows, refs, tolerance):
        out = []
        for k, name in enumerate(names):
            key = _REF_OF.get(name)
            if key is None:
                continue
            ratios = [r[k] / ref[key] for r, ref in zip(rows, refs) if ref[key] > 0]
            if len(ratios) < 2:
                continue
            half = len(ratios) // 2
            a = sum(ratios[:half]) / half
            b = sum(ratios[half:]) / (len(ratios) - half)
            if abs(a - b) > tolerance * max(abs(a), 1e-9):
                out.append("%s/reference moved %+.3f %%" % (name, (b / a - 1) * 100 if a else 0.0))
        return out


class HighRateOutput:
    """The documented test-mode meter constant: PL_constant divided by `factor` makes the chip's CF
    test output (and its energy registers) run `factor` times faster, so a bench resolves small
    errors at low current in seconds instead of minutes. The power offsets (PoffsetL/QoffsetL) add
    to the power before the PL scaling, so in test mode they are written `factor` times larger: the
    meter's relative error is then the same as in normal mode. `view(normal_registers)` gives the
    registers to write while testing; the normal ones are what the meter keeps."""

    SCALED = ("PoffsetL", "QoffsetL")

    def __init__(self, factor, normal_pl, meter_constant):
        self.normal_pl = int(normal_pl)
        self.meter_constant = meter_constant
        self.requested = max(1, int(factor))
        self._set_factor(self.requested)

    def _set_factor(self, factor):
        self.factor = max(1, int(factor))
        self.test_pl = max(1, int(round(self.normal_pl / float(self.factor))))
        self.scale = self.normal_pl / float(self.test_pl)
        self.test_constant = self.meter_constant * self.scale     # imp/kWh of the test output

    def fit(self, regs):
        """Lower the factor if the scaled power offsets would not fit their registers (a board with
        large crosstalk). Returns True when the factor changed."""
        worst = max([abs(F.s16(regs[n])) for n in self.SCALED if n in regs] + [0])
        if worst * self.scale <= 32767:
            return False
        self._set_factor(max(1, 32767 // worst))
        return True

    def view(self, regs):
        out = dict(regs)
        h, l = F.split_pl(self.test_pl)
        out["PLconstH"], out["PLconstL"] = h, l
        for name in self.SCALED:
            if name in regs:
                v = int(round(F.s16(regs[name]) * self.scale))
                if not -32768 <= v <= 32767:
                    raise F.RangeProblem(name, v, -32768, 32767,
                                         "the power offset does not fit the test mode: use a smaller factor")
                out[name] = F.u16(v)
        return out

    def normal(self, regs):
        out = dict(regs)
        out["PLconstH"], out["PLconstL"] = F.split_pl(self.normal_pl)
        return out

    def info(self):
        return {"factor": self.factor, "requested_factor": self.requested, "test_constant_imp_per_kwh": self.test_constant,
                "meter_constant_imp_per_kwh": self.meter_constant, "pl_constant": self.normal_pl,
                "test_pl_constant": self.test_pl}
