"""Stand-ins for sys.stdin/sys.stdout on the MicroPython unix port, so board tests control the service
port: `PollableIn` is a user stream that select.poll understands (through ioctl), `Out` collects writes.
MicroPython only: under CPython the tests use an os.pipe, which CPython's select.poll needs.
"""
import io

_MP_STREAM_POLL = 3
_POLLIN = 1


class PollableIn(io.IOBase):
    def __init__(self):
        self.data = bytearray()

    def feed(self, data):
        self.data.extend(data)

    def readinto(self, buf):
        n = min(len(buf), len(self.data))
        for i in range(n):
            buf[i] = self.data[i]
        self.data = self.data[n:]
        return n

    def ioctl(self, req, arg):
        if req == _MP_STREAM_POLL:
            return arg & _POLLIN if self.data else 0
        return -1  # no file descriptor, nothing else supported: poll falls back to ioctl


class Out:
    def __init__(self):
        self.data = bytearray()

    def write(self, buf):
        self.data.extend(buf)
        return len(buf)


class _Std:
    def __init__(self, buffer):
        self.buffer = buffer


class FakeSys:
    """What board.py uses of `sys`: stdin.buffer and stdout.buffer."""

    def __init__(self):
        self.stdin = _Std(PollableIn())
        self.stdout = _Std(Out())
