"""Factory flashing: esptool-driven batch flashing, and a simulated ESP32 ROM bootloader to test it on."""
