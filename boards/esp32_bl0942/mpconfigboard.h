// MicroPython board configuration for the esp32_bl0942 prepaid meter (see mpconfigboard.cmake).
#define MICROPY_HW_BOARD_NAME "Prepaid meter ESP32-BL0942"
#define MICROPY_HW_MCU_NAME "ESP32"

// No Wi-Fi or Bluetooth use on this meter; the radio stays off (see docs/factory.md, TRNG).
#define MICROPY_PY_BLUETOOTH (0)
