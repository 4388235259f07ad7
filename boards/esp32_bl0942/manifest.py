# MicroPython manifest for the production firmware of the BL0942 DIN-rail board: the meter application
# and the ESP32 board module (shared with esp32_atm90e26; board.py here links to it) frozen in. Named by
# mpconfigboard.cmake; build with ESP-IDF (docs/factory.md):
#   make -C ports/esp32 BOARD_DIR=<repo>/boards/esp32_bl0942
include("$(PORT_DIR)/boards/manifest.py")
include("../app_manifest.py")
module("board.py")  # this board's pins and buses, importable as `board`
