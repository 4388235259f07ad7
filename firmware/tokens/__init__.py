"""Prepaid tokens: STS (EA11 MISTY1) and OpenPAYGO decoding, replay store, key change and lockout."""
