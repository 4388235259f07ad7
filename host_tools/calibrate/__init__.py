"""The calibration lab: bench drivers, the ATM90E26 calibration procedure, verification against an
accuracy class and certificates. See docs/calibration.md."""
