# MicroPython manifest for a custom ESP32 firmware with the meter application frozen in (bytecode in
# flash, not RAM). Build with ESP-IDF, see docs/factory.md:
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=<repo>/boards/esp32_atm90e26/manifest.py
include("$(PORT_DIR)/boards/manifest.py")
include("../../host_tools/build/app_manifest.py")
module("board.py")  # this board's pins and buses, importable as `board`
