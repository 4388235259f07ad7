"""Service-port commands for metering and calibration (loaded on demand): read and write the chip's
calibration (stored in flash, reloaded at every boot and chip restart), raw register reads and writes
for the lab. The chip driver says which names, values and registers are allowed."""
from metering.calibration import CAL_RECORD

_DESIGN_KEYS = ("un_v", "ib_a", "imax_a", "f_hz", "meter_constant_imp_per_kwh", "front_end", "scales")


NAMES = ("cal_get", "cal_set", "raw_read", "raw_write")
PRIVILEGED = NAMES


def handle(cal, cmd, req):
    """`cal`: the meter's `metering.calibration.Calibration`."""
    return getattr(_Commands(cal), cmd)(req)


class _Commands:
    def __init__(self, cal):
        self.cal = cal

    def cal_get(self, req):
        c = self.cal
        info = c.info
        design = {k: info[k] for k in _DESIGN_KEYS if k in info}
        return {"chip": info.get("chip"), "cal": dict(c.meter.chip.cal), "calibrated": c.calibrated,
                "design": design}

    def cal_set(self, req):
        c = self.cal
        new = req.get("cal")
        if not isinstance(new, dict) or not new:
            raise ValueError("cal must be an object of calibration names to integer values")
        chip = c.meter.chip
        for k, v in new.items():
            chip.check_cal(k, v)
        old = dict(chip.cal)
        chip.cal.update(new)
        if not c.meter.begin():
            chip.cal.clear()
            chip.cal.update(old)
            c.meter.begin()
            raise ValueError("the chip refused the calibration; the previous one is back in force")
        if req.get("persist", True) and c.store is not None:
            c.store.commit(CAL_RECORD, dict(chip.cal))
            c.calibrated = True
        c.emit("calibration_changed", None)
        return {"cal": dict(chip.cal), "health": c.meter.readings()["health"]}

    def raw_read(self, req):
        regs = req.get("regs")
        if not isinstance(regs, list) or not regs or len(regs) > 32:
            raise ValueError("regs must be a list of 1..32 register addresses")
        chip = self.cal.meter.chip
        return {"values": [chip.raw_read(a) for a in regs]}

    def raw_write(self, req):
        reg = req.get("reg")
        val = req.get("value")
        self.cal.meter.chip.raw_write(reg, val)
        return {"reg": reg, "value": val}
