"""ESP32 flash encryption (AES-256 with the address-tweaked key, FLASH_CRYPT_CONFIG) done by esptool's
own `espsecure`, for the factory line (encrypt images on the host before writing them) and for the
simulated chip's flash cache (decrypt what the CPU reads, encrypt what it writes)."""
import io
import threading

import espsecure
from esp_pylib.logger import EspLog

from host_tools.flash.progress import ThreadRoutedLog

_quiet_lock = threading.Lock()

ALIGN = 32  # the tweak changes per 32-byte block; the engine works on whole blocks


class _Named(io.BytesIO):
    """espsecure checks that its output is not its input by file name; give each buffer its own."""

    def __init__(self, data=b"", name="buffer"):
        super().__init__(data)
        self.name = name


class FlashCipher:
    """Encrypt/decrypt flash contents at absolute flash addresses with one chip's key."""

    def __init__(self, key, crypt_config=0xF):
        if len(key) != 32:
            raise ValueError("an ESP32 flash encryption key is 32 bytes")
        self.key = bytes(key)
        self.crypt_config = crypt_config

    def _run(self, fn, addr, data):
        if addr % ALIGN or len(data) % ALIGN:
            raise ValueError(f"flash encryption works on 32-byte blocks (address {addr:#x}, {len(data)} bytes)")
        out = _Named(name="out")
        with _quiet_lock:
            # espsecure prints "Using 256-bit key." on stdout: route esptool's log to this thread's
            # board log (none here, so it is dropped) unless a flashing run already routes it
            previous = EspLog.instance
            if not isinstance(previous, ThreadRoutedLog):
                EspLog.set_logger(ThreadRoutedLog())
            try:
                fn(_Named(self.key, "key"), out, addr, self.crypt_config, False, _Named(bytes(data), "in"))
            finally:
                EspLog.instance = previous
        return out.getvalue()

    def encrypt(self, addr, data):
        return self._run(espsecure.encrypt_flash_data, addr, data)

    def decrypt(self, addr, data):
        return self._run(espsecure.decrypt_flash_data, addr, data)

    def encrypt_padded(self, addr, data):
        """Encrypt an image for writing at `addr`, padded with 0xFF to whole 32-byte blocks."""
        pad = -len(data) % ALIGN
        return self.encrypt(addr, bytes(data) + b"\xff" * pad)


def span(addr, n):
    """The 32-byte-aligned range (start, end) covering [addr, addr + n)."""
    start = addr - addr % ALIGN
    end = -(-(addr + n) // ALIGN) * ALIGN
    return start, end
