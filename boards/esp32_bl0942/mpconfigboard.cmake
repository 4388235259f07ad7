# MicroPython custom board definition (ports/esp32, `make BOARD_DIR=<repo>/boards/esp32_bl0942`):
# a generic ESP32 (no PSRAM, 4 MiB flash) with the OTA partition layout, the meter application frozen
# in (manifest.py), flash encryption in release mode (sdkconfig.board). See docs/factory.md.
set(IDF_TARGET esp32)

# The partition table lives in this folder; ESP-IDF resolves a relative file name against the port, so
# hand it the absolute path through a generated sdkconfig fragment.
file(WRITE ${CMAKE_BINARY_DIR}/sdkconfig.meter-partitions
     "CONFIG_PARTITION_TABLE_CUSTOM=y\nCONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\"${MICROPY_BOARD_DIR}/partitions.csv\"\n")

set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    ${MICROPY_BOARD_DIR}/sdkconfig.board
    ${CMAKE_BINARY_DIR}/sdkconfig.meter-partitions
)

set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)
