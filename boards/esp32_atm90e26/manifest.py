# MicroPython manifest for the production firmware: the meter application and this board's code frozen
# in (bytecode in flash, not RAM). Named by mpconfigboard.cmake; build with ESP-IDF (docs/factory.md):
#   make -C ports/esp32 BOARD_DIR=<repo>/boards/esp32_atm90e26
include("$(PORT_DIR)/boards/manifest.py")
include("../app_manifest.py")
module("board.py")  # this board's pins and buses, importable as `board`
