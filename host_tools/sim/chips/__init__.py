"""Register-level models of the metering chips the firmware drives (one module per chip)."""
