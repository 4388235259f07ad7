"""The meter's calibration at boot: the stored one (written by the lab through `cal_set`) over the
board's defaults."""

CAL_RECORD = "calibration"


class Calibration:
    """What the calibration commands (`metering.commands`) work on: the meter (its chip holds the values
    in force), the store, the events, the board's metering section (`info`) and whether the values in
    force came from the lab (`calibrated`: stored, not the board's defaults)."""

    def __init__(self, meter, store, emit, info, calibrated):
        self.meter = meter
        self.store = store
        self.emit = emit
        self.info = info
        self.calibrated = calibrated
_OPTIONAL = ("SagTh",)      # settings a stored calibration may add to the board's (ATM90E26 sag level)


def stored_calibration(store, defaults, emit):
    """The calibration to run with: the stored one over the board's defaults. A stored record that is
    corrupt is an event; the board defaults keep the meter metering (uncalibrated, flagged)."""
    cal = dict(defaults)
    if store is None:
        return cal, False
    try:
        saved = store.load(CAL_RECORD)
    except Exception as e:  # StoreMissing is normal (never calibrated); anything else is a fault
        if type(e).__name__ != "StoreMissing":
            emit("calibration_unreadable", {"error": type(e).__name__})
        return cal, False
    for k, v in saved.items():
        if k in cal or k in _OPTIONAL:
            cal[k] = v
    return cal, True
