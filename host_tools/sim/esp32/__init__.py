"""The simulated ESP32: the firmware process in lockstep (`SimMeter`), its link to the world, the firmware
tree it runs, its OTA flash, the REPL its UART serves, and the MicroPython modules the board provides (mpy/)."""
