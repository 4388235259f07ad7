"""The factory line's provisioning: the utility's keystore, per-meter identity and keys written over
the service port and verified by challenge, and the manufacturing records (SQLite) with the head-end
export."""
