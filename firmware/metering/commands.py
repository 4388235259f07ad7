"""Service-port commands for metering and calibration (loaded on demand): read and write the chip's
calibration (stored in flash, reloaded at every boot and chip restart), raw register reads for the lab,
small-power mode."""
from metering.chips import atm90e26 as _chip

from metering.calibration import CAL_RECORD
_WRITABLE_RAW = (0x04,)          # SmallPMod: the lab's offset measurement mode
_DESIGN_KEYS = ("un_v", "ib_a", "imax_a", "f_hz", "meter_constant_imp_per_kwh", "front_end")


NAMES = ("cal_get", "cal_set", "raw_read", "raw_write")
PRIVILEGED = NAMES


def handle(app, cmd, req):
    return getattr(_Commands(app), cmd)(req)


class _Commands:
    def __init__(self, app):
        self.app = app

    def cal_get(self, req):
        app = self.app
        info = app.metering_info
        return {"cal": dict(app.meter.chip.cal), "calibrated": app.calibrated,
                "design": {k: info[k] for k in _DESIGN_KEYS}}

    def cal_set(self, req):
        app = self.app
        new = req.get("cal")
        if not isinstance(new, dict) or not new:
            raise ValueError("cal must be an object of register names to 16-bit values")
        chip = app.meter.chip
        for k, v in new.items():
            if k not in _chip.REGISTER_ADDRESS:
                raise ValueError("unknown calibration register %r" % k)
            if not isinstance(v, int) or v < 0 or v > 0xFFFF:
                raise ValueError("%s must be an integer 0..65535" % k)
            if k == "Ugain" and v & 0x8000:
                raise ValueError("Ugain bit 15 must be 0 (datasheet)")
        old = dict(chip.cal)
        chip.cal.update(new)
        if not app.meter.begin():
            chip.cal.clear()
            chip.cal.update(old)
            app.meter.begin()
            raise ValueError("the chip refused the calibration; the previous one is back in force")
        if req.get("persist", True) and app.store is not None:
            app.store.commit(CAL_RECORD, dict(chip.cal))
            app.calibrated = True
        app.events.emit("calibration_changed", None)
        return {"cal": dict(chip.cal), "health": app.meter.readings()["health"]}

    def raw_read(self, req):
        regs = req.get("regs")
        if not isinstance(regs, list) or not regs or len(regs) > 32:
            raise ValueError("regs must be a list of 1..32 register addresses")
        chip = self.app.meter.chip
        out = []
        for a in regs:
            if not isinstance(a, int) or a < 0 or a > 0x7F:
                raise ValueError("register address out of range: %r" % (a,))
            if 0x40 <= a <= 0x45 or a == 0x01:
                raise ValueError("register 0x%02x clears on read: use totals" % a)
            out.append(chip.read(a))
        return {"values": out}

    def raw_write(self, req):
        reg = req.get("reg")
        val = req.get("value")
        if reg not in _WRITABLE_RAW:
            raise ValueError("only SmallPMod (0x04) may be written raw")
        if not isinstance(val, int) or val < 0 or val > 0xFFFF:
            raise ValueError("value must be 0..65535")
        self.app.meter.chip.write(reg, val)
        return {"reg": reg, "value": val}
