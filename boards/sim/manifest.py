# MicroPython manifest for a unix-port build with the meter application frozen in, as the ESP32 build
# has it (see docs/factory.md):
#   make -C ports/unix FROZEN_MANIFEST=<repo>/boards/sim/manifest.py
include("$(PORT_DIR)/variants/manifest.py")
include("../app_manifest.py")
module("board.py")  # the simulator-backed board, importable as `board`
