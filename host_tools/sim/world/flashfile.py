"""The simulated meter's `vfs` partition: a littlefs image in a file, the same image the build makes for
the board. Counts what is written (wear) and can tear a write to model a power cut inside it."""
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


class FlashFile:
    """The partition as the CPU sees it. With `cipher` (a host_tools.flash.crypt.FlashCipher: the chip's
    flash encryption is on and the partition is encrypted) the file holds ciphertext, as the flash chip
    does; reads are decrypted and writes encrypted at their absolute flash address, as the flash cache
    does. Erased flash stays 0xFF in the file (it reads back as noise, as on the chip)."""

    def __init__(self, path, size, block_size, offset=0, cipher=None):
        self.path = path
        self.cipher = cipher
        self.size = size
        self.block_size = block_size
        self.offset = offset           # where the partition starts inside the file (a whole-chip image)
        self.f = open(path, "r+b")
        self.bytes_written = 0
        self.blocks_erased = 0
        self.writes = 0
        self.cut_hook = None           # fn(offset, data) -> None or number of bytes to land before a cut

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
        if self.cut_hook:
            land = self.cut_hook(off, data)
            if land is not None:
                self._put(off, data[:land])
                self.f.flush()
                raise PowerCut(off + land)
        self._put(off, data)
        self.f.flush()        # the firmware reads the file directly
        self.bytes_written += len(data)
        self.writes += 1

    def erase(self, off, n):
        self._check(off, n)
        self.f.seek(self.offset + off)
        self.f.write(b"\xff" * n)
        self.f.flush()
        self.blocks_erased += n // self.block_size

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
