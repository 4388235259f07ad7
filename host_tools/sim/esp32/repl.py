"""What UART0 of a simulated ESP32 serves once the application has stopped: MicroPython's REPL (friendly
prompt, Ctrl-C, raw REPL on Ctrl-A, so mpremote gets in), run by the real unix-port interpreter on its
own pseudo-terminal, in a folder holding the board's file system as the chip would show it (its files
decrypted through the flash encryption engine if that is on) and with the frozen application on the
search path. Bytes written into the folder are not put back into the flash file.

Whether the application lets a Ctrl-C through is read from the firmware process itself: the unix port,
like the ESP32 port, catches Ctrl-C (SIGINT) while keyboard interrupt is enabled and stops catching it
after `micropython.kbd_intr(-1)` (/proc/PID/status, SigCgt)."""
import os
import select
import signal
import subprocess
import termios
import tty

from host_tools.paths import micropython_bin

SIGINT_BIT = 1 << (signal.SIGINT - 1)


def catches_ctrl_c(pid):
    """True while the process catches SIGINT, i.e. MicroPython's keyboard interrupt is enabled."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & SIGINT_BIT)
    except OSError:
        return False
    return False


class ReplSession:
    """A MicroPython REPL on a pty; the simulator copies the service UART's bytes in and out."""

    def __init__(self, cwd, micropypath, heap="256k"):
        master, slave = os.openpty()
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[3] |= termios.ISIG  # Ctrl-C at the prompt interrupts, as on the board
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        env = dict(os.environ, MICROPYPATH=micropypath)
        self.proc = subprocess.Popen([micropython_bin(), "-X", "heapsize=%s" % heap], stdin=slave, stdout=slave,
                                     stderr=slave, cwd=str(cwd), env=env, start_new_session=True, close_fds=True)
        os.close(slave)
        self.fd = master
        self.bytes_in = 0

    def write(self, data):
        self.bytes_in += len(data)
        os.write(self.fd, data)

    def read(self, timeout=0.0):
        """Whatever the REPL printed (b"" if nothing within timeout); None once it has exited."""
        r, _w, _x = select.select([self.fd], [], [], timeout)
        if not r:
            return None if self.proc.poll() is not None else b""
        try:
            return os.read(self.fd, 4096)
        except OSError:
            return None

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        try:
            os.close(self.fd)
        except OSError:
            pass
