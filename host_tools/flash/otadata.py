"""The `otadata` partition and the second-stage bootloader's choice of app slot, as ESP-IDF lays and
applies them (app rollback enabled, as in every MicroPython ESP32 build): two 4 KB sectors, each holding
one select entry (u32 ota_seq, 20-byte label, u32 ota_state, u32 CRC-32 of ota_seq seeded 0xFFFFFFFF).
The entry with the highest valid sequence selects slot (seq - 1) % number of OTA slots; with no usable
entry (blank, or only aborted or invalid ones) the first OTA slot runs, as a board flashed by cable.

At boot: a selected image in state NEW becomes PENDING_VERIFY and runs; one still PENDING_VERIFY (it was
never marked valid before this reset) becomes ABORTED and the other slot runs: the rollback."""
import binascii
import struct

SECTOR = 0x1000
_ENTRY = struct.Struct("<I20sII")
NEW, PENDING_VERIFY, VALID, INVALID, ABORTED, UNDEFINED = 0, 1, 2, 3, 4, 0xFFFFFFFF
STATE_NAMES = {NEW: "new", PENDING_VERIFY: "pending_verify", VALID: "valid", INVALID: "invalid",
               ABORTED: "aborted", UNDEFINED: "undefined"}


def crc(seq):
    return binascii.crc32(struct.pack("<I", seq), 0xFFFFFFFF) & 0xFFFFFFFF


def entry(seq, state):
    return _ENTRY.pack(seq, b"\0" * 20, state, crc(seq))


def parse_entry(raw):
    """(seq, state) of a valid entry, else None (blank or CRC mismatch)."""
    seq, _label, state, c = _ENTRY.unpack(raw[:_ENTRY.size])
    if seq == 0xFFFFFFFF or c != crc(seq):
        return None
    return seq, state


def select(otadata, slots):
    """The bootloader's decision. `otadata`: the partition's bytes (2 sectors); `slots`: number of OTA app
    slots. Returns (slot index, [(sector index, new entry bytes)] to write back, note)."""
    entries = [parse_entry(otadata[i * SECTOR:i * SECTOR + _ENTRY.size]) for i in (0, 1)]
    live = [(e[0], i, e[1]) for i, e in enumerate(entries) if e is not None]
    if not live:
        return 0, [], "otadata blank: first OTA slot"
    live.sort(reverse=True)
    seq, sector, state = live[0]
    if state in (INVALID, ABORTED):
        for s2, _i, st2 in live[1:]:
            if st2 not in (INVALID, ABORTED):
                return (s2 - 1) % slots, [], "newest entry %s: the older slot" % STATE_NAMES[state]
        return 0, [], "no usable entry: the first OTA slot, as with blank otadata"
    if state == NEW:
        return (seq - 1) % slots, [(sector, entry(seq, PENDING_VERIFY))], "new image: pending verify"
    if state == PENDING_VERIFY:
        writes = [(sector, entry(seq, ABORTED))]
        for s2, _i, st2 in live[1:]:
            if st2 not in (INVALID, ABORTED):
                return (s2 - 1) % slots, writes, "rollback: the image was not marked valid before this reset"
        # no other usable entry (the old image ran from blank otadata, as flashed by cable): the
        # bootloader falls back as for blank otadata, to the first OTA slot
        return 0, writes, "rollback: the image was not marked valid before this reset (to the first slot)"
    return (seq - 1) % slots, [], "valid"


def set_boot(otadata, slot, slots, state=NEW):
    """[(sector, entry bytes)] that make `slot` the boot slot (esp_ota_set_boot_partition): a sequence
    above the newest that maps to it, in the sector not holding the newest entry."""
    entries = [parse_entry(otadata[i * SECTOR:i * SECTOR + _ENTRY.size]) for i in (0, 1)]
    live = [(e[0], i) for i, e in enumerate(entries) if e is not None]
    top, sector = max(live) if live else (0, 1)
    seq = top + 1
    while (seq - 1) % slots != slot:
        seq += 1
    return [((sector + 1) % 2, entry(seq, state))]
