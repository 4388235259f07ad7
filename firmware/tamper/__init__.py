# Tamper detection from what the meter measures (current imbalance, reverse energy, terminal cover).
