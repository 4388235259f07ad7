"""The simulated meter's `vfs` partition: a littlefs image in a file, the same image the build makes for
the board. Counts what is written (wear, per block too) and, with a `FlashFaults` model, fails the way a
worn NOR flash does.

Fault models (public API, also used by the chaos run):

    faults = FlashFaults(seed, torn_write=True, torn_erase=True, bitflip_wear=5000, bitflip_rate=0.02,
                         read_during_erase=0.01, wear_base=4000)
    flash = FlashFile(path, size, block_size, faults=faults)     # or: flash.faults = faults
    flash.cut_hook = lambda kind, off, n: None or k               # cut the power inside this operation
    flips = flash.power_cycle()                                   # bits lost while the meter was off

- **Torn write** (`torn_write`): a program the power cut lands its first k bytes; the rest keep what
  they held (erased 0xFF, as littlefs programs only erased space).
- **Torn erase** (`torn_erase`): an erase the power cut leaves its block partly erased: bytes before a
  random cut read 0xFF, the rest keep their old content.
- **Bit flips in worn blocks** (`bitflip_wear`, `bitflip_rate`): every block counts its erases
  (`erase_counts`, starting from `wear_base` with a seeded +-10 % spread: an aged meter). At each
  `power_cycle()` a block with w >= bitflip_wear erases loses one bit with probability
  `bitflip_rate * w / bitflip_wear` (capped at 1): a programmed 0 reads 1 (charge loss, the NOR
  retention failure), anywhere in the block's programmed bytes - record data or littlefs metadata.
  `fixed_blocks` are blocks the file system pins in place and rewrites rarely (littlefs's superblock
  pair, blocks 0 and 1: never wear-levelled, compacted only when the pair itself fills, which littlefs
  keeps logarithmic by moving the root out of it): an aged meter has not worn them, so they start at
  no erases and age by their own erases only (the retention of a block depends on its own cycling).
- **Read during an erase** (`read_during_erase`): with this probability an erase is still running when
  the driver returns (a worn block erases slowly); until the next program or erase completes it, the
  block reads as a seeded mix of 0xFF and old bytes, and a power cut in that window leaves the mix.

`cut_hook(kind, off, n)` ("write" or "erase", partition offset, length) returns None to let the
operation complete, or the byte at which the power dies. Without a fault model only writes are offered
to the hook (the behaviour before the models). Every choice comes from the seed: a run is reproducible.
Counts: `torn_writes`, `torn_erases`, `bit_flips`, `slow_erases`, `flip_log` [(block, offset, bit)].
"""
import random

from host_tools.build import image as build_image
from host_tools.flash import crypt


class PowerCut(Exception):
    """Raised inside a flash write when the simulator cuts the power there."""


def make_image(path, size, block_size, files):
    """Write a fresh littlefs image of `size` bytes holding files {name: bytes} (the build's own maker)."""
    image = build_image.make_image({"/" + n.lstrip("/"): d for n, d in files.items()}, block_size,
                                   size // block_size)
    with open(path, "wb") as f:
        f.write(image)


def read_image_files(path, size, block_size, offset=0, cipher=None):
    """{name: bytes} of every file in an image (a partition image, or a whole-chip flash file with the
    partition at `offset`; decrypted with `cipher` when the chip's flash encryption is on)."""
    with open(path, "rb") as f:
        f.seek(offset)
        image = f.read(size)
    if cipher is not None:
        image = cipher.decrypt(offset, image)
    return {n.lstrip("/"): d for n, d in build_image.read_image(image, block_size).items()}


class FlashFaults:
    """Seeded fault model for a FlashFile (see the module docstring for each kind)."""

    def __init__(self, seed=1, torn_write=True, torn_erase=True, bitflip_wear=None, bitflip_rate=0.0,
                 read_during_erase=0.0, wear_base=0, fixed_blocks=()):
        if bitflip_rate < 0 or read_during_erase < 0 or wear_base < 0:
            raise ValueError("fault rates and wear must not be negative")
        if bitflip_rate and not bitflip_wear:
            raise ValueError("bitflip_rate needs bitflip_wear (the erase count where blocks start to lose bits)")
        self.seed = seed
        self.torn_write = torn_write
        self.torn_erase = torn_erase
        self.bitflip_wear = bitflip_wear
        self.bitflip_rate = bitflip_rate
        self.read_during_erase = read_during_erase
        self.wear_base = wear_base
        self.fixed_blocks = tuple(fixed_blocks)
        self.rng = random.Random("flashfaults-%d" % seed)

    def initial_wear(self, blocks):
        """Erases each block has seen before the run: wear_base +- 10 %, seeded; none for fixed blocks."""
        if not self.wear_base:
            return [0] * blocks
        lo, hi = int(self.wear_base * 0.9), int(self.wear_base * 1.1)
        wear = [self.rng.randint(lo, hi) for _ in range(blocks)]
        for b in self.fixed_blocks:
            if 0 <= b < blocks:
                wear[b] = 0
        return wear

    def flip_chance(self, wear):
        if not self.bitflip_rate or wear < self.bitflip_wear:
            return 0.0
        return min(1.0, self.bitflip_rate * wear / self.bitflip_wear)

    def erase_mix(self, old):
        """What a block being erased reads: each byte either already 0xFF or still old."""
        r = self.rng
        return bytes(0xFF if r.random() < 0.5 else b for b in old)


class FlashFile:
    """The partition as the CPU sees it. With `cipher` (a host_tools.flash.crypt.FlashCipher: the chip's
    flash encryption is on and the partition is encrypted) the file holds ciphertext, as the flash chip
    does; reads are decrypted and writes encrypted at their absolute flash address, as the flash cache
    does. Erased flash stays 0xFF in the file (it reads back as noise, as on the chip)."""

    def __init__(self, path, size, block_size, offset=0, cipher=None, faults=None):
        self.path = path
        self.cipher = cipher
        self.size = size
        self.block_size = block_size
        self.offset = offset           # where the partition starts inside the file (a whole-chip image)
        self.f = open(path, "r+b")
        self.bytes_written = 0
        self.blocks_erased = 0
        self.writes = 0
        self.cut_hook = None           # fn(kind, offset, length) -> None or the byte the power dies at
        self.erase_counts = [0] * (size // block_size)
        self.torn_writes = self.torn_erases = self.bit_flips = self.slow_erases = 0
        self.flip_log = []             # (block, offset in block, bit) of every bit lost
        self._erasing = None           # block whose erase still runs (read_during_erase)
        self.faults = None
        if faults is not None:
            self.set_faults(faults)

    def set_faults(self, faults):
        """Use fault model `faults` from now on (its initial wear is laid over the blocks' counts)."""
        self.faults = faults
        for b, w in enumerate(faults.initial_wear(len(self.erase_counts))):
            self.erase_counts[b] += w

    def _check(self, off, n):
        if off < 0 or off + n > self.size:
            raise ValueError("flash access outside the partition: offset %d length %d" % (off, n))

    def read(self, off, n):
        self._check(off, n)
        if self.cipher is not None:
            return self._read_plain(self.offset + off, n)
        self.f.seek(self.offset + off)
        return self.f.read(n)

    def _read_plain(self, addr, n):
        start, end = crypt.span(addr, n)
        self.f.seek(start)
        plain = self.cipher.decrypt(start, self.f.read(end - start))
        return plain[addr - start:addr - start + n]

    def _put(self, off, data):
        """Store `data` at partition offset `off` (encrypted in whole 32-byte blocks when encryption is on)."""
        addr = self.offset + off
        if self.cipher is not None:
            start, end = crypt.span(addr, len(data))
            plain = bytearray(self._read_plain(start, end - start))
            plain[addr - start:addr - start + len(data)] = data
            addr, data = start, self.cipher.encrypt(start, bytes(plain))
        self.f.seek(addr)
        self.f.write(data)

    def write(self, off, data):
        self._check(off, len(data))
        self._settle()        # a program waits for an erase still running
        fa = self.faults
        if self.cut_hook and (fa is None or fa.torn_write):
            land = self.cut_hook("write", off, len(data))
            if land is not None:
                self._put(off, data[:land])
                self.f.flush()
                self.torn_writes += 1
                raise PowerCut(off + land)
        self._put(off, data)
        self.f.flush()        # the firmware reads the file directly
        self.bytes_written += len(data)
        self.writes += 1

    def _raw(self, off, n):
        self.f.seek(self.offset + off)
        return self.f.read(n)

    def _raw_put(self, off, data):
        # Raw bytes as the flash chip holds them (ciphertext when encrypted): erases and bit rot.
        self.f.seek(self.offset + off)
        self.f.write(data)

    def erase(self, off, n):
        self._check(off, n)
        self._settle()
        fa = self.faults
        bs = self.block_size
        if self.cut_hook and fa is not None and fa.torn_erase:
            cut = self.cut_hook("erase", off, n)
            if cut is not None:
                # A partly erased range: 0xFF up to the cut, the old content after it.
                self._raw_put(off, b"\xff" * cut)
                self.f.flush()
                for b in range(off // bs, (off + max(cut, 1) + bs - 1) // bs):
                    self.erase_counts[b] += 1
                self.torn_erases += 1
                raise PowerCut(off + cut)
        for b in range(off // bs, (off + n) // bs):
            self.erase_counts[b] += 1
        if fa is not None and fa.read_during_erase and n == bs and fa.rng.random() < fa.read_during_erase:
            # Still erasing when the driver returns: reads meet a mix until the next operation.
            self._raw_put(off, fa.erase_mix(self._raw(off, n)))
            self._erasing = off
            self.slow_erases += 1
        else:
            self._raw_put(off, b"\xff" * n)
        self.f.flush()
        self.blocks_erased += n // bs

    def _settle(self):
        if self._erasing is not None:
            self._raw_put(self._erasing, b"\xff" * self.block_size)
            self.f.flush()
            self._erasing = None

    def power_off(self):
        """The supply is gone: an erase still running stops where it is (its mix stays)."""
        self._erasing = None

    def power_cycle(self):
        """The meter was off: worn blocks lose bits (see FlashFaults). Returns [(block, offset, bit)]."""
        self.power_off()
        fa = self.faults
        if fa is None or not fa.bitflip_rate:
            return []
        bs = self.block_size
        flips = []
        for b, w in enumerate(self.erase_counts):
            p = fa.flip_chance(w)
            if not p or fa.rng.random() >= p:
                continue
            raw = bytearray(self._raw(b * bs, bs))
            # A programmed 0 bit turns 1: pick among the bytes that hold a 0 (none in an erased block).
            zeros = [i for i, v in enumerate(raw) if v != 0xFF]
            if not zeros:
                continue
            i = fa.rng.choice(zeros)
            bit = fa.rng.choice([k for k in range(8) if not raw[i] >> k & 1])
            raw[i] |= 1 << bit
            self._raw_put(b * bs + i, bytes(raw[i:i + 1]))
            flips.append((b, i, bit))
        if flips:
            self.f.flush()
            self.bit_flips += len(flips)
            self.flip_log.extend(flips)
        return flips

    def _fs(self):
        import littlefs
        from host_tools.build.image import NAME_MAX
        buf = bytearray(self.read(0, self.size))
        fs = littlefs.LittleFS(context=littlefs.UserContext(buffer=buf), block_size=self.block_size,
                               block_count=self.size // self.block_size, name_max=NAME_MAX, mount=False)
        fs.mount()
        return fs, buf

    def _write_back(self, fs, buf):
        fs.unmount()
        self.f.seek(self.offset)
        self.f.write(buf)
        self.f.flush()

    def list_files(self, folder="/"):
        """Every file's path under `folder` (with the meter off)."""
        fs, _ = self._fs()
        out = []
        for root, _dirs, files in fs.walk(folder):
            for n in files:
                out.append((root.rstrip("/") + "/" + n).lstrip("/"))
        fs.unmount()
        return sorted(out)

    def flip_bytes(self, names, at=-1, mask=0xFF):
        """Flip bits (XOR `mask`) of the byte at `at` in each named file (with the meter off): rot in a
        record that littlefs itself still reads. Returns {name: (offset, old byte)} for those found.
        Goes through littlefs, so the rest of the file system stays as the firmware left it."""
        fs, buf = self._fs()
        done = {}
        for n in names:
            path = "/" + n.lstrip("/")
            try:
                with fs.open(path, "rb") as f:
                    data = bytearray(f.read())
            except FileNotFoundError:
                continue
            if not data:
                continue
            i = at % len(data)
            done[n] = (i, data[i])
            data[i] ^= mask
            with fs.open(path, "wb") as f:
                f.write(bytes(data))
        self._write_back(fs, buf)
        return done

    def put_files(self, files):
        """Write each {name: bytes} of `files` whole (with the meter off), through littlefs: with
        `remove_files` for the files made since, a directory put back to an older state, as littlefs
        leaves it after dropping the commits that followed one whose metadata lost a bit."""
        fs, buf = self._fs()
        for n, data in files.items():
            with fs.open("/" + n.lstrip("/"), "wb") as f:
                f.write(bytes(data))
        self._write_back(fs, buf)

    def fill(self, name="junk", keep_blocks=0):
        """Fill the file system with one file (with the meter off), leaving about `keep_blocks` free:
        a flash that is full. Returns the bytes written."""
        fs, buf = self._fs()
        n = 0
        chunk = b"\xa5" * self.block_size
        with fs.open("/" + name, "wb") as f:
            while True:
                free = self.size // self.block_size - fs.used_block_count
                if free <= keep_blocks + 1:
                    break
                try:
                    f.write(chunk)
                except Exception:       # littlefs: no space left
                    break
                n += len(chunk)
        self._write_back(fs, buf)
        return n

    def remove_files(self, names):
        """Delete files from the partition (with the meter off): a record lost to rot or a bad block.
        Goes through littlefs itself, so the rest of the file system stays as the firmware left it."""
        import littlefs
        from host_tools.build.image import NAME_MAX
        buf = bytearray(self.read(0, self.size))
        fs = littlefs.LittleFS(context=littlefs.UserContext(buffer=buf), block_size=self.block_size,
                               block_count=self.size // self.block_size, name_max=NAME_MAX, mount=False)
        fs.mount()
        gone = []
        for n in names:
            try:
                fs.remove("/" + n.lstrip("/"))
                gone.append(n)
            except FileNotFoundError:
                pass
        fs.unmount()
        self.f.seek(self.offset)
        self.f.write(buf)
        self.f.flush()
        return gone

    def close(self):
        self.f.flush()
        self.f.close()
