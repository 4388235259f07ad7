"""Run the MicroPython unix port behind a pseudo-terminal, reachable at a stable symlink, so mpremote
and pyserial open it exactly as they open a board on USB. A small copy loop between two ptys
(no socat needed): the interpreter's side is raw with signals on, so Ctrl-C from the host
interrupts a running script, as on a board."""
import os
import select
import subprocess
import termios
import threading
import tty

from host_tools import paths


class MicroPythonOnPty:
    def __init__(self, link, cwd=None, heap="256k", micropython=None, env=None):
        self.link = str(link)
        self.cwd = cwd
        self.args = [micropython or paths.micropython_bin(), "-X", f"heapsize={heap}"]
        self.env = env
        self.proc = None
        self._stop_r, self._stop_w = os.pipe()

    def start(self):
        self._child_m, child_s = os.openpty()
        tty.setraw(child_s)
        attrs = termios.tcgetattr(child_s)
        attrs[3] |= termios.ISIG  # Ctrl-C (0x03) becomes SIGINT for the interpreter
        termios.tcsetattr(child_s, termios.TCSANOW, attrs)
        self._host_m, self._host_s = os.openpty()
        tty.setraw(self._host_s)
        self.proc = subprocess.Popen(self.args, stdin=child_s, stdout=child_s, stderr=child_s, cwd=self.cwd,
                                     env=self.env, start_new_session=True, close_fds=True)
        os.close(child_s)
        tmp = f"{self.link}.{os.getpid()}.tmp"
        os.symlink(os.ttyname(self._host_s), tmp)
        os.replace(tmp, self.link)
        self._thread = threading.Thread(target=self._pump, daemon=True, name=f"pty-{self.link}")
        self._thread.start()
        return self

    def _pump(self):
        ends = {self._child_m: self._host_m, self._host_m: self._child_m}
        while True:
            r, _w, _x = select.select([self._child_m, self._host_m, self._stop_r], [], [])
            if self._stop_r in r:
                return
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return  # the interpreter exited
                if not data:
                    return
                os.write(ends[fd], data)

    def stop(self):
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self._child_m, self._host_m, self._host_s, self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass
        if os.path.islink(self.link):
            os.unlink(self.link)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
