"""Vending-side token encoders: STS (DKGA04 keys, EA11 MISTY1 tokens) and OpenPAYGO."""
