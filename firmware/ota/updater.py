"""The meter's side of an update: an offer checked and taken, the image downloaded in chunks straight
into the next OTA partition, resumable from the progress record after a link drop or a power cut, the
whole image checked (signature and SHA-256 read back from flash), the switch at a quiet moment, and the
new image's proof before it marks itself valid; otherwise the bootloader rolls back at the next reset
and the old image reports `ota_rolled_back` with the reason (docs/ota.md).

The progress record `ota` (format 1) is read and written by every version: an image that is rolled back
still reads it. Its "mig", written when an image marks itself valid, is null until that image's record
migrations ran to the end, then its version: a cut in between leaves them to run at the next boot. Chunk requests go out one at
a time, no sooner than `gap_ms` after the last chunk (the rate limit that leaves metering, tokens and
the keypad their time) and again after `retry_ms` without an answer (a dropped link or a head-end that
went away).

Progress ("off") is committed after every chunk written, so a resume asks for the next chunk, not
the last 16 KB again. A slot block is erased only before its first chunk; a resume inside a block
writes into its erased rest. A cut between a chunk's write and its commit makes the resume write
that chunk again over itself: the same bytes on NOR flash (a torn write is completed, never
changed), and the whole image is hashed from flash before it is used."""
import hashlib
from binascii import hexlify, unhexlify

from micropython import const

from ota import offer as O

_RECORD = "ota"
_BLOCK = const(4096)

IDLE = "idle"
DOWNLOAD = "dl"
READY = "ready"
SWITCHED = "switched"

BUSY = "busy"
HASH_MISMATCH = "hash_mismatch"
BAD_CHUNK = "bad_chunk"
NO_SLOT = "no_ota_slot"


class Updater:
    def __init__(self, store, partition, clock, emit, board, running_version, trust, chunk_mac=None,
                 chunk=1024, gap_ms=250, retry_ms=15000, trial_s=600, stall_s=21600):
        """`partition`: the `esp32.Partition` class. `chunk_mac(sha8, offset, data)` -> bytes the chunk
        must carry (None: chunks carry none). `trust`: the update keys' public numbers."""
        self.store = store
        self.P = partition
        self.clock = clock
        self.emit = emit
        self.board = board
        self.version = running_version
        self.trust = trust
        self.chunk_mac = chunk_mac
        self.chunk_size = chunk
        self.gap_ms = gap_ms
        self.retry_ms = retry_ms
        self.trial_s = trial_s
        self.stall_ms = stall_s * 1000
        self._progress = clock.ticks_ms()   # last chunk written (or this boot)
        self.running = partition(partition.RUNNING)
        self.slot = self.running.info()[4]
        self.trial = False
        self.on_valid = None          # () -> None: the new image's record migrations (ota/migrate.py)
        self._trial_end = 0
        self._asked = None            # (offset, n, ticks) of the request in flight
        self._last_rx = None
        self.stats = {"chunks": 0, "bad": 0, "dup": 0, "out_of_order": 0, "requests": 0}
        self.rec = self._load()
        self.part = None
        if self.rec.get("st") in (DOWNLOAD, READY, SWITCHED):
            self.part = self._slot(self.rec["slot"])

    # -- the record --------------------------------------------------------------------------------
    def _load(self):
        try:
            r = self.store.load(_RECORD)
        except Exception:
            r = None
        if not isinstance(r, dict) or r.get("f") != 1:
            r = {"f": 1, "st": IDLE}
        return r

    def _save(self):
        self.store.commit(_RECORD, self.rec)

    def _slot(self, label):
        for p in self.P.find(self.P.TYPE_APP):
            if p.info()[4] == label:
                return p
        return None

    @property
    def state(self):
        return self.rec.get("st", IDLE)

    def _header(self):
        return O.parse(unhexlify(self.rec["ofr"]))[0]

    # -- at boot -----------------------------------------------------------------------------------
    def boot(self):
        """Called once at start. Returns "trial" (this image must prove itself), "rolled_back" (the
        bootloader went back to this image) or None."""
        r = self.rec
        st = r.get("st")
        if st in (READY, SWITCHED) and self.slot == r.get("slot"):
            if st == READY:
                # a cut between set_boot and the record noting it: noted now, so a reset before this
                # image proves itself is the old one's rollback to report, not a switch to do again
                r["st"] = SWITCHED
                self._save()
            self.trial = True
            self._trial_end = self.clock.ticks_add(self.clock.ticks_ms(), self.trial_s * 1000)
            self.emit("ota_trial", {"version": self.version, "slot": self.slot, "from": r.get("from")})
            return "trial"
        if st == SWITCHED:
            why = r.get("reason") or "reset before the new image proved itself"
            self.rec = {"f": 1, "st": IDLE, "floor": r.get("floor"),
                        "last": {"v": r.get("v"), "result": "rolled_back", "reason": why}}
            self._save()
            self.emit("ota_rolled_back", {"version": r.get("v"), "running": self.version, "slot": self.slot,
                                          "reason": why})
            return "rolled_back"
        if st == IDLE and r.get("mig", self.version) != self.version:
            # marked valid, but a cut came before its record migrations were noted done: run them now
            try:
                self._migrate()
            except Exception as e:
                self.emit("job_failed", {"job": "ota_migrate", "error": repr(e)})   # again next boot
        return None

    def _migrate(self):
        """This image's record migrations (`on_valid`; safe to run again), then the marker they ran."""
        if self.on_valid is not None:
            self.on_valid()
        self.rec["mig"] = self.version
        self._save()

    # -- the offer ---------------------------------------------------------------------------------
    def offer(self, data):
        """(code, why). The same offer again while it is in progress is accepted (a redelivery, or the
        head-end resuming); another one is `busy`."""
        r = self.rec
        if r.get("st") in (DOWNLOAD, READY, SWITCHED) and not self.trial:
            if hexlify(data).decode() == r.get("ofr"):
                self._progress = self.clock.ticks_ms()     # the head-end is serving this offer: not stalled
                return O.ACCEPTED, "resuming at %d of %d" % (r.get("off", 0), r["size"])
            return BUSY, "installing %s" % r.get("v")
        if self.trial:
            return BUSY, "proving %s" % self.version
        nxt = self.running.get_next_update()
        if nxt is None:
            return NO_SLOT, "no other OTA slot"
        code, h, why = O.check(data, self.trust, self.board, self.version, r.get("floor"), nxt.info()[3])
        if code != O.ACCEPTED:
            self.emit("ota_refused", {"code": code, "why": why,
                                      "version": h.get("version") if h else None})
            return code, why
        self.part = nxt
        self.rec = {"f": 1, "st": DOWNLOAD, "ofr": hexlify(data).decode(), "v": h["version"], "size": h["size"],
                    "sha": h["sha256"], "ar": h.get("anti_rollback"), "slot": nxt.info()[4], "off": 0,
                    "from": self.version, "floor": r.get("floor")}
        self._save()
        self._asked = None
        # the stall clock starts with the download, not at boot: an offer hours after boot was abandoned
        # at once ("no chunk for 21600 s") before its first chunk was asked for
        self._progress = self.clock.ticks_ms()
        self.emit("ota_offered", {"version": h["version"], "size": h["size"], "slot": self.rec["slot"]})
        if self._slot_sha(h["size"]) == h["sha256"]:
            # the slot already holds this image, verified (an offer again after a rollback caused by a
            # reset, not by the image): no download, straight to the checks and the switch
            self.rec["off"] = h["size"]
            self._finish()
        return O.ACCEPTED, ""

    # -- the download ------------------------------------------------------------------------------
    def wanted(self):
        """(sha8, offset, n) to ask for now, or None (nothing to fetch, a request in flight, or the rate
        limit says wait)."""
        r = self.rec
        if r.get("st") != DOWNLOAD:
            return None
        c = self.clock
        now = c.ticks_ms()
        if c.ticks_diff(now, self._progress) >= self.stall_ms:
            # nobody has served a chunk for hours (a campaign cancelled, a head-end gone): give up, so
            # the meter is free for the next offer
            self.rec = {"f": 1, "st": IDLE, "floor": r.get("floor"),
                        "last": {"v": r["v"], "result": "abandoned", "reason": "no chunk for %d s" % (self.stall_ms // 1000)}}
            self._save()
            self.emit("ota_failed", {"version": r["v"], "code": "abandoned", "why": self.rec["last"]["reason"]})
            return None
        if self._asked is not None and c.ticks_diff(now, self._asked[2]) < self.retry_ms:
            return None
        if self._asked is None and self._last_rx is not None and c.ticks_diff(now, self._last_rx) < self.gap_ms:
            return None
        off = r["off"]
        n = min(self.chunk_size, r["size"] - off, _BLOCK - off % _BLOCK)
        self._asked = (off, n, now)
        self.stats["requests"] += 1
        return r["sha"][:8], off, n

    def chunk(self, offset, data, mac=None):
        """One chunk from the head-end. Returns "ok", "done", "duplicate", "out_of_order", "bad_chunk",
        a final check's refusal (hash_mismatch, bad_signature, ...) or "idle" (nothing is downloading)."""
        r = self.rec
        if r.get("st") != DOWNLOAD:
            return "idle"
        off = r["off"]
        if offset < off:
            self.stats["dup"] += 1
            return "duplicate"
        if offset != off:
            self.stats["out_of_order"] += 1
            self._asked = None
            return "out_of_order"
        n = min(self.chunk_size, r["size"] - off, _BLOCK - off % _BLOCK)
        if len(data) != n or (self.chunk_mac is not None and mac != self.chunk_mac(r["sha"][:8], offset, data)):
            self.stats["bad"] += 1
            self._asked = None           # ask again at once
            return BAD_CHUNK
        block, inside = off // _BLOCK, off % _BLOCK
        if inside == 0:
            self.part.ioctl(6, block)    # erase the block before its first chunk (also on a resume)
        self.part.writeblocks(block, data, inside)
        self.stats["chunks"] += 1
        off += n
        r["off"] = off
        self._asked = None
        self._last_rx = self._progress = self.clock.ticks_ms()
        if off == r["size"]:
            return self._finish()
        self._save()                     # a resume goes on from the next chunk (see the module text)
        return "ok"

    def _slot_sha(self, size):
        """SHA-256 (hex) of the first `size` bytes of the target slot, read back from flash."""
        h = hashlib.sha256()
        buf = bytearray(_BLOCK)
        mv = memoryview(buf)
        pos = 0
        while pos < size:
            self.part.readblocks(pos // _BLOCK, buf)
            k = min(_BLOCK, size - pos)
            h.update(mv[:k])
            pos += k
        return hexlify(h.digest()).decode()

    def _finish(self):
        """The whole image is in the slot: read it back, hash it, check the signed offer once more."""
        r = self.rec
        got = self._slot_sha(r["size"])
        code, _h, why = O.check(unhexlify(r["ofr"]), self.trust, self.board, self.version, r.get("floor"),
                                self.part.info()[3])
        if got != r["sha"]:
            code, why = HASH_MISMATCH, "slot hashes to %s" % got[:16]
        if code != O.ACCEPTED:
            self.rec = {"f": 1, "st": IDLE, "floor": r.get("floor"),
                        "last": {"v": r["v"], "result": code, "reason": why}}
            self._save()
            self.emit("ota_failed", {"version": r["v"], "code": code, "why": why})
            return code
        r["st"] = READY
        self._save()
        self.emit("ota_ready", {"version": r["v"], "slot": r["slot"]})
        return "done"

    # -- the switch --------------------------------------------------------------------------------
    def switch(self, quiet):
        """At a quiet moment (`quiet` True: no relay change, no commit open) make the verified image the
        boot image. True: the caller resets the board now."""
        if self.rec.get("st") != READY or not quiet:
            return False
        self.part.set_boot()
        self.rec["st"] = SWITCHED       # after set_boot: a cut between the two still finds the trial
        self._save()
        self.emit("ota_switch", {"version": self.rec["v"], "slot": self.rec["slot"]})
        return True

    # -- the proof ---------------------------------------------------------------------------------
    def prove(self, checks):
        """During a trial: `checks` {name: bool}. All true -> mark valid ("valid"); the trial time over
        with any false -> record why and return "reset" (the caller resets; the bootloader rolls back);
        else None (still waiting)."""
        if not self.trial:
            return None
        failing = [k for k in checks if not checks[k]]
        if not failing:
            self.P.mark_app_valid_cancel_rollback()
            r = self.rec
            floor = r.get("floor")
            ar = r.get("ar")
            if ar and (not floor or O.version_tuple(ar) > O.version_tuple(floor)):
                floor = ar
            self.rec = {"f": 1, "st": IDLE, "floor": floor, "mig": None,     # migrations not yet run
                        "last": {"v": self.version, "result": "valid", "from": r.get("from")}}
            self._save()
            self.trial = False
            self.emit("ota_valid", {"version": self.version, "slot": self.slot, "from": r.get("from")})
            self._migrate()           # migrations only now: a rolled-back image still reads every record
            return "valid"
        if self.clock.ticks_diff(self.clock.ticks_ms(), self._trial_end) >= 0:
            failing.sort()
            self.rec["reason"] = "not healthy within %d s: %s" % (self.trial_s, ", ".join(failing))
            self._save()
            self.emit("ota_unhealthy", {"version": self.version, "reason": self.rec["reason"]})
            return "reset"
        return None

    def status(self):
        r = self.rec
        out = {"version": self.version, "slot": self.slot, "state": "trial" if self.trial else r.get("st", IDLE)}
        if r.get("st") in (DOWNLOAD, READY, SWITCHED):
            out.update(target=r.get("v"), bytes=r.get("off", 0), size=r.get("size"), chunks=self.stats)
        if r.get("floor"):
            out["anti_rollback"] = r["floor"]
        if r.get("last"):
            out["last"] = r["last"]
        return out
