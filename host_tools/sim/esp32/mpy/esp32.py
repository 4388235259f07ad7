"""`esp32.Partition` for the simulated ESP32 on the MicroPython unix port: the real API names over the
chip's flash file (METER_CHIP; the simulator's bootloader says which slot runs in METER_RUNNING_SLOT).
Partitions come from the table at 0x8000; `set_boot` and `mark_app_valid_cancel_rollback` write
`otadata` as ESP-IDF does (host_tools/flash/otadata.py is the bootloader's side). Programming only
clears bits, as on NOR flash: a block must be erased before it is written."""
import os
import struct
from binascii import crc32

_path = os.getenv("METER_CHIP")
if not _path:
    raise ImportError("esp32: this simulated board has no chip flash (METER_CHIP)")
_running = os.getenv("METER_RUNNING_SLOT") or "ota_0"
_SECTOR = 4096
_ENTRY = "<I20sII"


def _io(pos, n=None, data=None):
    with open(_path, "r+b" if data is not None else "rb") as f:
        f.seek(pos)
        if data is None:
            return f.read(n)
        f.write(data)


def _table():
    raw = _io(0x8000, 0xC00)
    out = []
    for i in range(0, len(raw) - 31, 32):
        e = raw[i:i + 32]
        if e[0] != 0xAA or e[1] != 0x50:
            break
        t, st, off, size = struct.unpack_from("<BBII", e, 2)
        label = e[12:28].split(b"\0", 1)[0].decode()
        out.append((t, st, off, size, label))
    return out


def _ota_crc(seq):
    return crc32(struct.pack("<I", seq), 0xFFFFFFFF) & 0xFFFFFFFF


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=4096):
        label = _running if id == Partition.RUNNING else id
        if id == Partition.BOOT:
            label = _boot_label()
        for e in _table():
            if e[4] == label:
                self._e = e
                break
        else:
            raise ValueError("partition not found")
        self.block_size = block_size

    @staticmethod
    def find(type=0, subtype=0xFF, label=None):
        return [Partition(e[4]) for e in _table()
                if e[0] == type and (subtype == 0xFF or e[1] == subtype) and (label is None or e[4] == label)]

    def info(self):
        t, st, off, size, label = self._e
        return (t, st, off, size, label, False)

    def _range(self, pos, n):
        if pos < 0 or pos + n > self._e[3]:
            raise OSError(22)
        return self._e[2] + pos

    def readblocks(self, block, buf, offset=0):
        pos = self._range(block * self.block_size + offset, len(buf))
        buf[:] = _io(pos, len(buf))

    def writeblocks(self, block, buf, offset=None):
        bs = self.block_size
        if offset is None:
            for i in range((len(buf) + bs - 1) // bs):
                self.ioctl(6, block + i)
            offset = 0
        pos = self._range(block * bs + offset, len(buf))
        old = _io(pos, len(buf))
        new = bytearray(len(buf))
        for i in range(len(buf)):
            new[i] = old[i] & buf[i]
        _io(pos, data=new)

    def ioctl(self, op, arg):
        if op == 4:
            return self._e[3] // self.block_size
        if op == 5:
            return self.block_size
        if op == 6:
            pos = self._range(arg * self.block_size, self.block_size)
            _io(pos, data=b"\xff" * self.block_size)
            return 0
        return 0 if op in (1, 2, 3) else None

    def _slots(self):
        return sorted([e for e in _table() if e[0] == 0 and 0x10 <= e[1] < 0x20], key=lambda e: e[1])

    def get_next_update(self):
        slots = self._slots()
        for i, e in enumerate(slots):
            if e[4] == self._e[4]:
                return Partition(slots[(i + 1) % len(slots)][4])
        return Partition(slots[0][4]) if slots else None

    def set_boot(self):
        slots = self._slots()
        idx = [e[4] for e in slots].index(self._e[4])
        od = _otadata()
        live = _entries(od)
        top, sector = max(live) if live else (0, 1)
        seq = top + 1
        while (seq - 1) % len(slots) != idx:
            seq += 1
        _write_entry(od, (sector + 1) % 2, seq, 0)     # ESP_OTA_IMG_NEW: rollback enabled

    @staticmethod
    def mark_app_valid_cancel_rollback():
        od = _otadata()
        live = _entries(od)
        if live:
            seq, sector = max(live)
            _write_entry(od, sector, seq, 2)            # ESP_OTA_IMG_VALID


def _otadata():
    for e in _table():
        if e[0] == 1 and e[1] == 0:
            return e
    raise OSError(2)


def _entries(od):
    out = []
    for i in (0, 1):
        seq, _l, _st, c = struct.unpack(_ENTRY, _io(od[2] + i * _SECTOR, 32))
        if seq != 0xFFFFFFFF and c == _ota_crc(seq):
            out.append((seq, i))
    return out


def _write_entry(od, sector, seq, state):
    _io(od[2] + sector * _SECTOR, data=b"\xff" * _SECTOR)
    _io(od[2] + sector * _SECTOR, data=struct.pack(_ENTRY, seq, b"\0" * 20, state, _ota_crc(seq)))


def _boot_label():
    slots = sorted([e for e in _table() if e[0] == 0 and 0x10 <= e[1] < 0x20], key=lambda e: e[1])
    live = _entries(_otadata())
    if not live:
        return slots[0][4]
    return slots[(max(live)[0] - 1) % len(slots)][4]
