"""A simulated ESP32 ROM serial bootloader: the command set esptool uses with --no-stub, backed by a
flash file, with faults a production line meets (wrong chip, a board that dies mid-write, a bad block).

`RomSimulator.handle(frame)` is the protocol (one request in, the responses out); `serve_pty` and
`serve_tcp` in rom_link.py put it on a port that esptool opens like a board."""
import hashlib
import os
import struct
import zlib

from host_tools.errors import UsageError

FLASH_SIZE = 4 * 1024 * 1024
SECTOR = 4096

# Chip-detect magic at 0x40001000. esptool detects ESP32 and ESP32-S2 by it; any other value is
# "unexpected magic" to esptool, which is how an unknown board looks.
CHIP_MAGIC = {"esp32": 0x00F01D83, "esp32s2": 0x000007C6, "esp8266": 0xFFF0C101, "unknown": 0x0BADC0DE}

_MAGIC_REG = 0x40001000
_APB_DATE = 0x3FF6607C
_UART_CLKDIV = 0x3FF40014
_SPI_BASE = 0x3FF42000
_SPI_W0 = _SPI_BASE + 0x80
_WINBOND = 0x40EF  # manufacturer 0xEF, memory type 0x40; the capacity byte above it is log2(size)

# request opcodes
SYNC, READ_REG, WRITE_REG = 0x08, 0x0A, 0x09
FLASH_BEGIN, FLASH_DATA, FLASH_END = 0x02, 0x03, 0x04
DEFL_BEGIN, DEFL_DATA, DEFL_END = 0x10, 0x11, 0x12
SPI_ATTACH, SPI_SET_PARAMS, CHANGE_BAUD = 0x0D, 0x0B, 0x0F
SPI_FLASH_MD5, READ_FLASH_SLOW, GET_SECURITY_INFO = 0x13, 0x0E, 0x14
ERASE_FLASH, ERASE_REGION = 0xD0, 0xD1

# ROM error codes (second status byte)
_ERR_INVALID_MSG = 0x05
_ERR_FAILED = 0x06
_ERR_BAD_CHECKSUM = 0x07
_ERR_BAD_SEQUENCE = 0x09

_SYNC_PAYLOAD = b"\x07\x07\x12\x20" + b"\x55" * 32
_SYNC_VALUE = 0x20120707  # any non-zero value: zero would mean "a stub is running"
_ESPRESSIF_OUI = bytes([0x24, 0x0A, 0xC4])


def mac_for(index):
    """A stable, distinct MAC per simulated board (Espressif OUI + the index)."""
    return _ESPRESSIF_OUI + (index & 0xFFFFFF).to_bytes(3, "big")


def efuse_path_for(flash_path):
    """The eFuse file that belongs to a flash file (one simulated chip = both)."""
    return str(flash_path) + ".efuse"


def checksum(data):
    c = 0xEF
    for b in data:
        c ^= b
    return c


class FlashFile:
    """The SPI flash chip as a file: 0xFF-filled when new, written through at once so another process
    (the simulator booting a meter) sees exactly what was flashed."""

    def __init__(self, path, size=FLASH_SIZE):
        self.path = str(path)
        self.size = size
        if not os.path.exists(self.path):
            with open(self.path, "wb") as f:
                f.write(b"\xff" * size)
        elif os.path.getsize(self.path) != size:
            raise UsageError(f"flash file {self.path} is {os.path.getsize(self.path)} bytes, expected {size}",
                             hint="delete it to start with an erased flash")
        self._f = open(self.path, "r+b", buffering=0)

    def read(self, addr, n):
        self._f.seek(addr)
        return self._f.read(n)

    def write(self, addr, data):
        self._f.seek(addr)
        self._f.write(data)

    def erase(self, addr, n):
        start = addr - addr % SECTOR
        end = min(self.size, -(-(addr + n) // SECTOR) * SECTOR)
        self.write(start, b"\xff" * (end - start))

    def close(self):
        self._f.close()


class RomSimulator:
    """The ESP32 ROM download-mode protocol. Faults:
    - chip: report another chip's magic ("esp32s2", "unknown", ...).
    - die_after_blocks: after this many flash data blocks the board answers nothing more.
    - corrupt_block: the data block with this number (counted from 0 over the whole session) is
      written with one bit flipped, so MD5 verify fails.
    chip_rev: the silicon revision (0, 1 or 3) of a new chip; a chip whose eFuse file exists keeps its
    own (None: 3, what new boards are)."""

    def __init__(self, flash_path, index=0, chip="esp32", die_after_blocks=None, corrupt_block=None,
                 flash_size=FLASH_SIZE, efuse_path=None, chip_rev=None):
        if chip not in CHIP_MAGIC:
            raise UsageError(f"unknown chip {chip!r}", hint=f"use one of {', '.join(CHIP_MAGIC)}")
        if flash_size & (flash_size - 1) or not (1 << 20) <= flash_size <= (128 << 20):
            raise UsageError(f"flash size {flash_size} is not a power of two between 1 and 128 MB",
                             hint="use 4MB, 8MB or 16MB")
        self.flash = FlashFile(flash_path, flash_size)
        self.mac = mac_for(index)
        from host_tools.flash.efuse import REVISIONS, ChipEfuses
        if chip_rev is not None and chip_rev not in REVISIONS:
            raise UsageError(f"chip revision {chip_rev} is not modelled", hint="use --chip-rev 0, 1 or 3")
        path = efuse_path or efuse_path_for(flash_path)
        self.efuses = ChipEfuses(path, mac=self.mac, revision=300 if chip_rev is None else chip_rev * 100)
        if chip_rev is not None and self.efuses.revision // 100 != chip_rev:
            raise UsageError(f"the chip in {path} is silicon v{self.efuses.revision // 100}, not v{chip_rev}",
                             hint="a chip's revision is fixed: leave out --chip-rev or use a new flash file")
        self.chip = chip
        self.die_after_blocks = die_after_blocks
        self.corrupt_block = corrupt_block
        self.blocks_written = 0
        self.requests = 0  # frames received: lets tests prove a board was never touched
        self.refused_syncs = 0
        self.dead = False
        self._regs = {}
        self._write = None  # the flash write in progress: dict(addr, block_size, next_seq, inflate)

    # ---- registers
    def read_reg(self, addr):
        if addr == _MAGIC_REG:
            return CHIP_MAGIC[self.chip]
        if self.efuses.covers(addr):
            return self.efuses.read_reg(addr)  # read-protected blocks read as zero, as on the chip
        if addr == _APB_DATE:
            return self.efuses.read_reg(self.efuses.REGS.APB_CTL_DATE_ADDR)
        if addr == _UART_CLKDIV:
            return 347  # 40 MHz crystal at 115200 baud
        if addr == _SPI_BASE:
            return 0  # SPI_CMD: the last flash command is done
        if addr == _SPI_W0:
            return (self.flash.size.bit_length() - 1) << 16 | _WINBOND
        return self._regs.get(addr, 0)

    # ---- protocol
    def handle(self, frame):
        """Return the list of response frames (unframed) for one request frame."""
        self.requests += 1
        if self.dead:
            return []
        if len(frame) < 8 or frame[0] != 0x00:
            return []
        _d, op, length, chk = struct.unpack("<BBHI", frame[:8])
        data = frame[8:8 + length]
        try:
            handler = self._HANDLERS.get(op)
            if handler is None:
                return [self._reply(op, status=1, error=_ERR_INVALID_MSG)]
            return handler(self, op, data, chk)
        except _RomError as e:
            return [self._reply(op, status=1, error=e.code)]

    def _reply(self, op, value=0, data=b"", status=0, error=0):
        body = data + bytes([status, error, 0, 0])
        return struct.pack("<BBHI", 0x01, op, len(body), value) + body

    def _sync(self, op, data, chk):
        if self.efuses.download_disabled:
            # UART_DOWNLOAD_DIS: the ROM never enters download mode, so nothing answers at all
            self.refused_syncs += 1
            return []
        if data != _SYNC_PAYLOAD:
            raise _RomError(_ERR_INVALID_MSG)
        return [self._reply(op, _SYNC_VALUE)] * 8

    def _read_reg(self, op, data, chk):
        (addr,) = struct.unpack("<I", data[:4])
        return [self._reply(op, self.read_reg(addr))]

    def _write_reg(self, op, data, chk):
        addr, value, mask, _delay = struct.unpack("<IIII", data[:16])
        if self.efuses.covers(addr):
            self.efuses.write_reg(addr, value, mask)  # espefuse burning through the controller
            return [self._reply(op)]
        old = self._regs.get(addr, 0)
        self._regs[addr] = (old & ~mask) | (value & mask)
        return [self._reply(op)]

    def _accept(self, op, data, chk):
        return [self._reply(op)]

    def _begin(self, op, data, chk):
        erase_size, _blocks, block_size, offset = struct.unpack("<IIII", data[:16])
        if len(data) != 16:
            raise _RomError(_ERR_INVALID_MSG)  # the ESP32 ROM takes no 5th "encrypted" word
        if offset + erase_size > self.flash.size:
            raise _RomError(_ERR_FAILED)
        self.flash.erase(offset, erase_size)
        inflate = zlib.decompressobj() if op == DEFL_BEGIN else None
        self._write = {"addr": offset, "block_size": block_size, "next_seq": 0, "inflate": inflate,
                       "end": offset + erase_size}
        return [self._reply(op)]

    def _data(self, op, data, chk):
        w = self._write
        if w is None or (op == DEFL_DATA) != (w["inflate"] is not None):
            raise _RomError(_ERR_FAILED)
        length, seq, _r1, _r2 = struct.unpack("<IIII", data[:16])
        payload = data[16:16 + length]
        if len(payload) != length or checksum(payload) != chk & 0xFF:
            raise _RomError(_ERR_BAD_CHECKSUM)
        if seq != w["next_seq"]:
            if seq == w["next_seq"] - 1:
                return [self._reply(op)]  # a retry of the block we already wrote
            raise _RomError(_ERR_BAD_SEQUENCE)
        if self.die_after_blocks is not None and self.blocks_written >= self.die_after_blocks:
            self.dead = True  # power lost / cable pulled: nothing more comes back
            return []
        out = w["inflate"].decompress(payload) if w["inflate"] else payload
        if out:
            if w["addr"] + len(out) > self.flash.size:
                raise _RomError(_ERR_FAILED)
            if self.corrupt_block is not None and self.blocks_written == self.corrupt_block:
                out = bytes([out[0] ^ 0x01]) + out[1:]
            self.flash.write(w["addr"], out)
            w["addr"] += len(out)
        w["next_seq"] += 1
        self.blocks_written += 1
        return [self._reply(op)]

    def _end(self, op, data, chk):
        self._write = None
        return [self._reply(op)]

    def _md5(self, op, data, chk):
        addr, size, _a, _b = struct.unpack("<IIII", data[:16])
        if addr + size > self.flash.size:
            raise _RomError(_ERR_FAILED)
        digest = hashlib.md5(self.flash.read(addr, size)).hexdigest().encode()
        return [self._reply(op, data=digest)]

    def _read_slow(self, op, data, chk):
        addr, size = struct.unpack("<II", data[:8])
        if size > 64 or addr + size > self.flash.size:
            raise _RomError(_ERR_FAILED)
        block = self.flash.read(addr, size) + b"\xff" * (64 - size)
        return [self._reply(op, data=block)]

    def _unsupported(self, op, data, chk):
        # the ESP32 ROM lacks these (GET_SECURITY_INFO, ERASE_FLASH, ERASE_REGION): esptool falls
        # back to the magic register, and refuses erase-flash without a stub
        raise _RomError(_ERR_INVALID_MSG)

    _HANDLERS = {
        SYNC: _sync, READ_REG: _read_reg, WRITE_REG: _write_reg,
        SPI_ATTACH: _accept, SPI_SET_PARAMS: _accept, CHANGE_BAUD: _accept,
        FLASH_BEGIN: _begin, DEFL_BEGIN: _begin, FLASH_DATA: _data, DEFL_DATA: _data,
        FLASH_END: _end, DEFL_END: _end,
        SPI_FLASH_MD5: _md5, READ_FLASH_SLOW: _read_slow,
        GET_SECURITY_INFO: _unsupported, ERASE_FLASH: _unsupported, ERASE_REGION: _unsupported,
    }

    def close(self):
        self.flash.close()


class _RomError(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code
