"""Service-port commands for metering and calibration (loaded on demand): read and write the chip's
calibration (stored in flash, reloaded at every boot and chip restart), raw register reads and writes
for the lab. The chip driver says which names, values and registers are allowed."""
from metering.calibration import CAL_RECORD

_DESIGN_KEYS = ("un_v", "ib_a", "imax_a", "f_hz", "meter_constant_imp_per_kwh", "front_end", "scales")


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
        design = {k: info[k] for k in _DESIGN_KEYS if k in info}
        return {"chip": info.get("chip"), "cal": dict(app.meter.chip.cal), "calibrated": app.calibrated,
                "design": design}

    def cal_set(self, req):
        app = self.app
        new = req.get("cal")
        if not isinstance(new, dict) or not new:
            raise ValueError("cal must be an object of calibration names to integer values")
        chip = app.meter.chip
        for k, v in new.items():
            chip.check_cal(k, v)
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
        return {"values": [chip.raw_read(a) for a in regs]}

    def raw_write(self, req):
        reg = req.get("reg")
        val = req.get("value")
        self.app.meter.chip.raw_write(reg, val)
        return {"reg": reg, "value": val}
