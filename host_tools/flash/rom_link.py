"""Put a RomSimulator on a port esptool opens like a board: a pseudo-terminal behind a stable symlink,
or a TCP socket (esptool's `socket://127.0.0.1:N`). One background thread per simulated board."""
import os
import select
import socket
import threading
import tty

from host_tools.errors import UsageError
from host_tools.flash import slip


class RomLink:
    """Serves `rom` until stop(). `port` is what esptool is given."""

    def __init__(self, rom, link=None, tcp_port=None):
        if (link is None) == (tcp_port is None):
            raise UsageError("give either a pty link path or a TCP port", hint="--link PATH or --tcp PORT")
        self.rom = rom
        self.link = str(link) if link is not None else None
        self._stop_r, self._stop_w = os.pipe()
        self._thread = None
        self._listener = None
        self._master = self._slave = None
        if link is not None:
            self._open_pty()
        else:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(("127.0.0.1", tcp_port))
            self._listener.listen(1)
            self.port = f"socket://127.0.0.1:{self._listener.getsockname()[1]}"

    def _open_pty(self):
        if os.path.lexists(self.link) and not os.path.islink(self.link):
            raise UsageError(f"{self.link} exists and is not a symlink", hint="choose another --link path")
        self._master, self._slave = os.openpty()
        # raw: the ROM speaks binary; keeping our own slave fd open means the master never sees EIO
        # while no client has the port open
        tty.setraw(self._slave)
        tmp = f"{self.link}.{os.getpid()}.tmp"
        os.symlink(os.ttyname(self._slave), tmp)
        os.replace(tmp, self.link)
        self.port = self.link

    def start(self):
        target = self._serve_pty if self._master is not None else self._serve_tcp
        self._thread = threading.Thread(target=target, name=f"rom-{self.port}", daemon=True)
        self._thread.start()
        return self

    def _serve_pty(self):
        dec = slip.Decoder()
        while True:
            r, _w, _x = select.select([self._master, self._stop_r], [], [])
            if self._stop_r in r:
                return
            try:
                data = os.read(self._master, 65536)
            except OSError:
                return
            for frame in dec.feed(data):
                for resp in self.rom.handle(frame):
                    os.write(self._master, slip.encode(resp))

    def _serve_tcp(self):
        while True:
            r, _w, _x = select.select([self._listener, self._stop_r], [], [])
            if self._stop_r in r:
                return
            conn, _addr = self._listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            dec = slip.Decoder()
            with conn:
                while True:
                    r, _w, _x = select.select([conn, self._stop_r], [], [])
                    if self._stop_r in r:
                        return
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        break  # client went away: wait for the next one, as a board would
                    for frame in dec.feed(data):
                        for resp in self.rom.handle(frame):
                            conn.sendall(slip.encode(resp))

    def stop(self):
        os.write(self._stop_w, b"x")
        if self._thread:
            self._thread.join(timeout=5)
        for fd in (self._master, self._slave, self._stop_r, self._stop_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self._listener:
            self._listener.close()
        if self.link and os.path.islink(self.link):
            os.unlink(self.link)
        self.rom.close()

    def __enter__(self):
        # start_rom() already started it: a second serving thread on the same fds would outlive stop()
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc):
        self.stop()


def start_rom(flash_path, link=None, tcp_port=None, **faults):
    """Start one simulated ESP32 on a pty link or a TCP port; returns the running RomLink."""
    from host_tools.flash.rom import RomSimulator
    return RomLink(RomSimulator(flash_path, **faults), link=link, tcp_port=tcp_port).start()
