"""An update offer (the signed head of a package, docs/ota.md): parse it and make the meter's checks in
order: signed by a trusted key, for this board, not below the anti-rollback version, installable over the
running version, fits the slot. Each refusal has its own result code (the same words as the host tool's)."""
import json
import struct

from ota import rsa

MAGIC = b"MKOTA\x01\r\n"
MAX_HEADER = 2048

ACCEPTED = "accepted"
BAD_PACKAGE = "bad_package"
BAD_SIGNATURE = "bad_signature"
WRONG_BOARD = "wrong_board"
DOWNGRADE = "downgrade"
TOO_OLD = "too_old"
TOO_BIG = "too_big"
SAME_VERSION = "already_installed"

_NEED = ("board", "version", "min_version", "size", "sha256", "key_id")


def version_tuple(text):
    """'1.2.3' -> (1, 2, 3); None when it is not MAJOR.MINOR.PATCH."""
    if not isinstance(text, str):
        return None
    parts = text.split(".")
    if len(parts) != 3:
        return None
    out = []
    for p in parts:
        if not p or len(p) > 5:
            return None
        for c in p:
            if c < "0" or c > "9":
                return None
        out.append(int(p))
    return tuple(out)


def parse(data):
    """(header dict, header bytes, signature) or (None, why, None)."""
    if len(data) < 14 or data[:8] != MAGIC:
        return None, "no MKOTA magic", None
    hl = struct.unpack_from("<I", data, 8)[0]
    if hl > MAX_HEADER or len(data) < 14 + hl:
        return None, "header length", None
    hb = bytes(data[12:12 + hl])
    sl = struct.unpack_from("<H", data, 12 + hl)[0]
    sig = bytes(data[14 + hl:14 + hl + sl])
    if len(sig) != sl:
        return None, "signature cut short", None
    try:
        h = json.loads(hb)
    except Exception:
        return None, "header not JSON", None
    if not isinstance(h, dict) or h.get("format") != 1:
        return None, "header format", None
    for k in _NEED:
        if k not in h:
            return None, "header lacks " + k, None
    if (version_tuple(h["version"]) is None or version_tuple(h["min_version"]) is None
            or not isinstance(h["size"], int) or h["size"] <= 0 or not isinstance(h["sha256"], str)
            or len(h["sha256"]) != 64):
        return None, "header values", None
    return h, hb, sig


def check(data, trust, board, running, floor, slot_size):
    """(code, header or None, why). `trust`: [{"id", "n" (hex), "e"}], `floor`: anti-rollback version
    or None, `slot_size`: bytes in the next OTA partition."""
    h, hb, sig = parse(data)
    if h is None:
        return BAD_PACKAGE, None, hb
    key = None
    for k in trust:
        if k.get("id") == h["key_id"]:
            key = k
    if key is None:
        return BAD_SIGNATURE, h, "key %s not trusted" % h["key_id"]
    if not rsa.verify(int(key["n"], 16), key.get("e", 65537), sig, hb):
        return BAD_SIGNATURE, h, "signature does not verify"
    if h["board"] != board:
        return WRONG_BOARD, h, "for board %s" % h["board"]
    v = version_tuple(h["version"])
    if floor and v < version_tuple(floor):
        return DOWNGRADE, h, "%s below anti-rollback %s" % (h["version"], floor)
    run = version_tuple(running) or (0, 0, 0)
    if run < version_tuple(h["min_version"]):
        return TOO_OLD, h, "running %s, needs %s" % (running, h["min_version"])
    if v == run:
        return SAME_VERSION, h, "running %s" % running
    if h["size"] > slot_size:
        return TOO_BIG, h, "%d bytes, slot %d" % (h["size"], slot_size)
    return ACCEPTED, h, ""
