"""meterkit: the host toolkit for the prepaid meter (simulator, build, flash, provision, calibrate, vend, head-end)."""
