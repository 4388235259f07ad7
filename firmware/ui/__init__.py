"""The meter's user interface: the 20x4 LCD's screens (`ui.display`), the keypad state machine
(`ui.keypad`), their words (`ui.fr`, French without accents for the HD44780 ROM) and integer-only
formatting (`ui.fmt`). The app builds `Display(board.display, clock)` and `Keypad(board.keypad, clock,
display, on_token, on_emergency, on_reconnect)`, calls `keypad.poll()` when input is waiting,
`keypad.tick()` and `display.tick()` a few times a second, and `display.update(snapshot)` when its
state changes. Screens, keys and flows: docs/ui.md.
"""
