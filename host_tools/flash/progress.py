"""Route esptool's (global, singleton) log to the board each thread is flashing: its progress bars
feed that board's rich progress task and its messages go to that board's log, so four boards
flashing at once each get their own bar instead of one interleaved stream."""
import threading

from esp_pylib.logger import EspLog, EspLogBase

_local = threading.local()


class BoardLog:
    """What one board's flashing said (messages), and how far it got (images finished, progress
    callback for the image being written)."""

    def __init__(self, on_progress=None, keep=200):
        self.lines = []
        self.done_images = 0
        self.writes = None  # [(offset, bytes, label)] once the board's layout is known
        self.keep = keep
        self.on_progress = on_progress  # called with (fraction of the current image done)

    def add(self, text):
        text = text.strip()
        if text:
            self.lines.append(text)
            del self.lines[:-self.keep]


class ThreadRoutedLog(EspLogBase):
    """An esptool logger that hands every call to the BoardLog bound to the calling thread."""

    def _sink(self):
        return getattr(_local, "board", None)

    def _say(self, *args, **_kw):
        sink = self._sink()
        if sink is not None:
            sink.add(" ".join(str(a) for a in args))

    print = note = hint = debug = _say

    def err(self, *args, suggestion=None):
        self._say("ERROR:", *args)

    def warn(self, *args, suggestion=None):
        self._say("WARNING:", *args)

    error, warning = err, warn

    def set_verbosity(self, mode):
        pass

    def progress_bar(self, cur_iter, total_iters, prefix="", suffix="", bar_length=30):
        sink = self._sink()
        if sink is not None and sink.on_progress and total_iters:
            sink.on_progress(cur_iter / total_iters)

    def __getattr__(self, name):
        # esptool grows helpers over time; anything we do not know is a message we may drop
        return lambda *a, **k: None


class routed_esptool_log:
    """Context manager: install ThreadRoutedLog as esptool's logger, restore the previous one after."""

    def __enter__(self):
        self._previous = EspLog.instance
        EspLog.set_logger(ThreadRoutedLog())
        return self

    def __exit__(self, *exc):
        EspLog.instance = self._previous


def bind(board_log):
    """Send this thread's esptool output to `board_log` (None to stop)."""
    _local.board = board_log
