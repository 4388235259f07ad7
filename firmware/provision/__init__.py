"""Per-meter identity and keys, written once on the factory line; the service-port commands that
write and check them, the challenge-response that guards privileged commands, and the self-test."""
