"""Peripheral drivers for parts on the meter boards (character LCD, keypad expander): each takes an
already-built bus in its constructor and never builds buses or knows pin numbers."""
