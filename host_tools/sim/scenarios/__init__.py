"""Scenarios: the whole chain (meter, modem, broker, head-end), firmware-update campaigns and power-cut
runs. They drive the head-end through its public API only (tests/test_sim_layout.py checks it)."""
