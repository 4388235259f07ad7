"""A simulated meter: the real firmware under the MicroPython unix port, connected to the world over
the link, with its flash in a file and its service port bridged to a pty (or driven by the runner).

Lockstep (accelerated) mode advances virtual time as fast as the firmware asks, exactly reproducible
from the seed. Realtime mode paces virtual time by the wall clock (times `speed`) and wakes the
firmware early when bytes arrive on the service pty. The same code serves both."""
import json
import os
import select
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from host_tools.errors import SimulationError
from host_tools.paths import board_dir, micropython_bin
from host_tools.sim.esp32 import link as L
from host_tools.sim.world.flashfile import FlashFile, PowerCut, make_image, read_image_files
from host_tools.sim.esp32.fwbuild import build_tree, frozen_layout, search_path
from host_tools.sim.esp32.repl import catches_ctrl_c
from host_tools.sim.world.world import World

_HELLO_R = struct.Struct("<QIB")

# The MicroPython heap cap simulated meters run under unless told otherwise. The 64-bit unix port
# needs roughly 1.5-2x the heap a 32-bit ESP32 needs for the same objects; `make bench` reports the
# lowest cap at which the firmware still completes a 30-day run (`firmware_min_heap_cap_kb`).
DEFAULT_HEAP = "256k"


class _Pins(dict):
    """GPIO number -> level, keeping the levels of GPIO 0-23 as one mask for the ADVANCE replies
    (one is sent at every wake of the firmware: about 100,000 a day with a modem online)."""

    def __init__(self, levels):
        super().__init__()
        self.mask = 0
        for pin, level in levels.items():
            self[pin] = level

    def __setitem__(self, pin, level):
        dict.__setitem__(self, pin, level)
        if pin < 24:
            if level:
                self.mask |= 1 << pin
            else:
                self.mask &= ~(1 << pin)


def chip_metering(board, chip):
    """The `metering` section of `board` built with `chip` instead (boards/<board>/chips/<chip>.json,
    or the board's own when it already has that chip)."""
    info = json.loads((board_dir(board) / "board.json").read_text())
    if info["metering"].get("chip") == chip:
        return info["metering"]
    path = board_dir(board) / "chips" / ("%s.json" % chip)
    if not path.exists():
        from host_tools.sim.world.chips import NAMES
        raise SimulationError("board %s has no variant with the metering chip %r" % (board, chip),
                              hint="chips: " + ", ".join(NAMES))
    return json.loads(path.read_text())


class ServiceChannel:
    """The meter's service UART as the simulator sees it: bytes towards the firmware (rx) and the
    lines it sends back. Requests the runner makes itself carry ids "_sim-N" and their replies are
    kept off the pty."""

    def __init__(self):
        self.rx = bytearray()
        self.tx_partial = bytearray()
        self.replies = {}            # id -> reply dict, for the runner's own requests
        self.lines_out = []          # complete lines for an outside client (pty)
        self.pty_fd = None
        self.pty_partial = False     # a host tool is half-way through a line
        self._n = 0

    def request(self, cmd, **args):
        self._n += 1
        rid = "_sim-%d" % self._n
        args.update(cmd=cmd, id=rid)
        self.rx += json.dumps(args).encode() + b"\n"
        return rid

    def from_firmware(self, data):
        self.tx_partial += data
        while True:
            i = self.tx_partial.find(b"\n")
            if i < 0:
                break
            line = bytes(self.tx_partial[:i + 1])
            del self.tx_partial[:i + 1]
            rid = None
            if b'"_sim-' in line:
                try:
                    obj = json.loads(line)
                    rid = obj.get("id")
                except ValueError:
                    obj = None
                if isinstance(rid, str) and rid.startswith("_sim-"):
                    self.replies[rid] = obj
                    continue
            if self.pty_fd is not None:
                try:
                    os.write(self.pty_fd, line)
                except OSError:
                    pass
            else:
                self.lines_out.append(line)

    def from_pty(self, data):
        self.rx += data
        self.pty_partial = not data.endswith(b"\n")


class SimMeter:
    """One simulated meter: world + firmware process + link. Use run_until()/request() in lockstep, or
    serve_realtime() for people and host tools."""

    def __init__(self, seed=1, profile="household", afe="typical", grid="stable", board="sim",
                 settings=None, heap=None, mpy=True, workdir=None, realtime=False, speed=1.0,
                 time_valid=True, flash_image=None, keep_flash=False, flash_offset=0,
                 app_from_flash=False, broker=None, smsc=None, epoch=None, frozen=False, vfs_size=None,
                 flash_cipher=None, repl=None, lcd_plays=True, chip=None, esp32=None, files=None, link=None):
        """`lcd_plays`: the board's LCD can play planned frames by itself (False: a board whose
        display the meter must wake to draw every display period, as before the LCD timer).
        `chip`: the metering chip (another variant of the board: boards/<board>/chips/).
        `esp32`: a simulated ESP32's application flash (host_tools/sim/esp32/otachip.py): each boot runs the
        frozen app carried by the image in the slot its bootloader selects. `files`: more files for a
        fresh file system ({name: bytes}, beside settings.json). `link`: the cellular bearer's profile
        (host_tools/sim/modem/linkprofile.py: "lte", the default, adds nothing; "2g")."""
        self.board = board
        self.lcd_plays = lcd_plays
        self.info = json.loads((board_dir(board) / "board.json").read_text())
        if chip is not None:
            # The same board with another metering chip: its `metering` section from boards/<board>/chips/
            self.info["metering"] = chip_metering(board, chip)
        self.seed = seed
        self.heap = heap or DEFAULT_HEAP
        self.world = World(self.info, seed, profile, afe, grid) if epoch is None else \
            World(self.info, seed, profile, afe, grid, epoch=epoch)
        self.service = ServiceChannel()
        self.realtime = realtime
        self.speed = speed
        self.time_valid = time_valid
        self.tmp = None
        if workdir is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="meter-sim-")
            workdir = self.tmp.name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.board_json = None
        if chip is not None:
            self.board_json = self.workdir / "board.json"
            self.board_json.write_text(json.dumps(self.info, indent=1))
        fl = dict(self.info["flash"])
        if vfs_size is not None:
            fl["vfs_size"] = vfs_size      # a board whose file system runs to the end of a larger flash
        self.vfs_size = fl["vfs_size"]
        self.frozen_dir = None
        self.esp32 = Path(esp32) if esp32 else None
        self.running_slot = None
        if self.esp32 is not None:
            self.fw_dir, _ = frozen_layout(board)       # data-only file system; the app comes from the slot
        elif app_from_flash:
            # Boot what was flashed: the application files come out of the flashed vfs partition.
            self.fw_dir = self.workdir / "app-from-flash"
            files = read_image_files(str(flash_image), fl["vfs_size"], fl["block_size"], flash_offset,
                                     cipher=flash_cipher)
            if "main.py" not in files:
                raise SimulationError("the flashed file system has no main.py", hint="build with `meterkit build --board %s` and flash its fs image" % board)
            for name, data in files.items():
                dst = self.fw_dir / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(data)
            # The simulated chip runs the production firmware: the application frozen in, found after
            # the file system on the search path (a development image's .mpy files shadow it, as on
            # the chip).
            self.frozen_dir = build_tree(board, mpy=True)
        elif frozen:
            self.fw_dir, self.frozen_dir = frozen_layout(board)
        else:
            self.fw_dir = build_tree(board, mpy=mpy)
        self.flash_path = Path(flash_image) if flash_image else self.workdir / "flash.img"
        # A flash file given with keep_flash=True is used as it is: a whole-chip image written by
        # `meterkit flash` (pass flash_offset = the board's vfs offset) or a partition image.
        if not self.flash_path.exists() or not keep_flash:
            files = dict(files or {})
            if settings:
                files["settings.json"] = json.dumps(settings).encode()
            make_image(self.flash_path, fl["vfs_size"], fl["block_size"], files)
        self.flash = FlashFile(str(self.flash_path), fl["vfs_size"], fl["block_size"], offset=flash_offset,
                               cipher=flash_cipher)
        self.pins = _Pins({v: 0 for v in self.info["pins"].values()})
        self.pin_names = {v: k for k, v in self.info["pins"].items()}
        fb = self.info["pins"].get("relay_feedback")
        self._fb_bit = 1 << fb if fb is not None and fb < 24 else 0
        self._display_lines = []
        self._display_plan = []       # [(virtual ms, lines)] the board's LCD plays while the meter sleeps
        self.keys = []
        self.boots = 0
        self.counts_read_import = 0   # 0.1-pulse counts read from APenergy / ANenergy (see _handle)
        self.counts_read_export = 0
        self.stats = {"frames": 0}
        # True: every flash program and erase fails (the board raises OSError EIO), nothing is written
        self.flash_failing = False
        self.proc = None
        self.link = None
        self.modem = None
        if broker is not None:
            # The cellular modem, at AT level, its TCP bridged to a real MQTT broker on this machine.
            import random as _random
            from host_tools.sim.modem import make_modem
            self.modem = make_modem(_random.Random(seed * 31 + 7), self.info.get("modem", {}).get("dialect", "sim7600"),
                                    broker=broker, smsc=smsc, clock=lambda: self.world.now_ms,
                                    epoch_s=self.world.epoch, powered=False, link=link)
        # UART0 with REPL semantics (a simulated ESP32: booting from its flash): a Ctrl-C stops an app that
        # has not disabled keyboard interrupt, and once the app has ended the REPL answers until the
        # watchdog (if armed) resets the board
        self.repl_model = app_from_flash if repl is None else repl
        self.repl = None
        self._repl_until = None
        self._repl_backlog = bytearray()
        self._interrupted = False
        self._wdt_ms = None
        self.listener, self.port = L.listen()
        self.log_path = self.workdir / "firmware.log"
        self.on_display = None
        self._wall0 = None
        self._virt0 = 0

    # -- firmware process ------------------------------------------------------------------------
    def boot(self):
        env = dict(os.environ)
        mpath = search_path(self.fw_dir, self.frozen_dir)
        if self.esp32 is not None:
            mpath = self._boot_chip(env)
        env.update(MICROPYPATH=mpath, METER_SIM="127.0.0.1:%d" % self.port,
                   METER_SEED=str(self.seed), METER_BOARD_JSON=str(self.board_json or self.fw_dir / "board.json"),
                   METER_FLASH_OFFSET=str(self.flash.offset), METER_VFS_SIZE=str(self.vfs_size),
                   METER_RESET_CAUSE=self.reset_cause, METER_LCD_PLAYS="1" if self.lcd_plays else "0")
        if self.flash.cipher is None:
            # plain flash: the board reads the file directly; encrypted flash is read through the
            # simulator, which decrypts as the chip's flash cache does
            env["METER_FLASH"] = str(self.flash_path.resolve())
        else:
            env.pop("METER_FLASH", None)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [micropython_bin(), "-X", "heapsize=%s" % self.heap, str(self.fw_dir / "main.py")],
            cwd=str(self.workdir), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
        log.close()
        self.listener.settimeout(0.05)
        deadline = time.monotonic() + 30
        while True:
            try:
                conn, _ = self.listener.accept()
                break
            except socket.timeout:
                if self.proc.poll() is not None:
                    raise SimulationError("the firmware exited before connecting (status %s)" % self.proc.returncode,
                                          hint="see %s:\n%s" % (self.log_path, self.firmware_log())) from None
                if time.monotonic() > deadline:
                    self.kill()
                    raise SimulationError("the firmware did not connect to the simulator within 30 s",
                                          hint="see %s" % self.log_path) from None
        self.link = L.Link(conn)
        self.link.conn.settimeout(60)
        self.boots += 1
        self._wdt_ms = None
        self._interrupted = False

    def _boot_chip(self, env):
        """The simulated ESP32's bootloader picks the slot (rolling back an image never marked valid);
        the app that runs is the one that slot's image carries. Raises SimulationError if none is valid."""
        from host_tools.ota import simimage
        from host_tools.sim.esp32 import otachip
        b = otachip.boot(self.esp32)
        self.running_slot = b.label
        self.boot_notes = getattr(self, "boot_notes", []) + [(b.label, b.note)]
        self.frozen_dir = simimage.frozen_dir(b.image)
        env.update(METER_CHIP=str(self.esp32), METER_RUNNING_SLOT=b.label)
        return search_path(self.fw_dir, self.frozen_dir) + ":" + str(otachip.SHIM_DIR)

    def kill(self):
        """Cut the firmware's power: the process dies wherever it is."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        if self.link:
            self.link.close()
            self.link = None

    def close(self):
        self.leave_repl()
        self.kill()
        self.listener.close()
        self.flash.close()
        if self.tmp:
            self.tmp.cleanup()

    def firmware_log(self, tail=3000):
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    # -- frame handling --------------------------------------------------------------------------
    def _flags(self):
        f = 0
        if self.service.rx:
            f |= L.IN_SERVICE
        if self.keys:
            f |= L.IN_KEY
        if self.modem is not None and self.modem.has_data():
            f |= L.IN_MODEM
        if self._death_at is not None and not self._pf_told:
            f |= L.IN_POWER_FAIL      # an edge: reported once, then the hold-up runs out
        return f

    def _handle(self, ftype, p, stop_at_ms):
        """Serve one frame. Returns False when the firmware asked to advance past stop_at_ms
        (the ADVANCE stays unanswered until the caller resumes)."""
        w = self.world
        link = self.link
        if ftype == L.METER_UART:
            want = struct.unpack_from("<H", p, 1)[0]
            link.reply(L.METER_UART, w.chip.uart(p[3:], want) if w.chip.bus == "uart" else b"")
        elif ftype == L.SPI:
            buf = bytearray(p[2:])
            if w.chip.bus != "spi":
                link.reply(L.SPI, b"\xff" * len(buf))      # nothing on this bus: MISO floats high
                return True
            w.chip.transfer(buf, p[1])
            # What the firmware took out of the ATM90E26's clear-on-read energy registers: the
            # reference for "energy registered" in power-cut checks.
            for i in range(0, len(buf) - 2, 3) if w.chip.kind == "atm90e26" else ():
                a = p[2 + i]
                if a == 0xC0 or a == 0xC1:
                    v = (buf[i + 1] << 8) | buf[i + 2]
                    if a == 0xC0:
                        self.counts_read_import += v
                    else:
                        self.counts_read_export += v
            link.reply(L.SPI, bytes(buf))
        elif ftype == L.ADVANCE:
            until = L.unpack_u64(p)
            self._pending_until = until
            self._pending_wake = len(p) < 9 or p[8] != 0
            return self._advance(stop_at_ms)
        elif ftype == L.UART_W:
            if p[0] == L.PORT_SERVICE:
                self.service.from_firmware(p[1:])
            elif p[0] == L.PORT_MODEM and self.modem is not None:
                self.modem.from_firmware(bytes(p[1:]))
        elif ftype == L.UART_R:
            port, mx = struct.unpack_from("<BH", p)
            data = b""
            if port == L.PORT_SERVICE:
                data = bytes(self.service.rx[:mx])
                del self.service.rx[:mx]
            elif port == L.PORT_MODEM and self.modem is not None:
                data = self.modem.read(mx)
            link.reply(L.UART_R, data)
        elif ftype == L.GPIO_W:
            self._gpio_write(p[0], p[1])
        elif ftype == L.GPIO_R:
            link.reply(L.GPIO_R, bytes((self._gpio_read(p[0]),)))
        elif ftype == L.FLASH_R:
            off, n = struct.unpack_from("<II", p)
            link.reply(L.FLASH_R, self.flash.read(off, n))
        elif ftype == L.FLASH_W:
            if self.flash_failing:           # the chip reports a program failure; nothing written
                self.stats["flash_failed_ops"] = self.stats.get("flash_failed_ops", 0) + 1
                link.reply(L.FLASH_W, b"\x01")
            else:
                off = struct.unpack_from("<I", p)[0]
                self.flash.write(off, p[4:])
                link.reply(L.FLASH_W, b"\x00")
        elif ftype == L.FLASH_E:
            if self.flash_failing:
                self.stats["flash_failed_ops"] = self.stats.get("flash_failed_ops", 0) + 1
                link.reply(L.FLASH_E, b"\x01")
            else:
                off, n = struct.unpack_from("<II", p)
                self.flash.erase(off, n)
                link.reply(L.FLASH_E, b"\x00")
        elif ftype == L.HELLO:
            link.reply(L.HELLO, _HELLO_R.pack(w.now_ms, w.epoch, 1 if self.time_valid else 0))
        elif ftype == L.WDT:
            # hangs are caught by the link's wall-clock timeout; a start (non-zero timeout) is
            # remembered: it is what resets a board whose application has ended at the REPL
            t = struct.unpack_from("<I", p)[0] if len(p) >= 4 else 0
            if t:
                self._wdt_ms = t
        elif ftype == L.DISPLAY:
            self._display_plan = []
            self.display_lines = p.decode("utf-8", "replace").split("\n")
        elif ftype == L.DISPLAY_PLAN:
            self._take_display_plan(p)
        elif ftype == L.KEY_R:
            link.reply(L.KEY_R, self.keys.pop(0).encode() if self.keys else b"")
        elif ftype == L.TIME_SET:
            t = struct.unpack_from("<I", p)[0]
            w.epoch = t - w.now_ms // 1000
        elif ftype == L.RESET:
            raise _Reboot()
        else:
            raise SimulationError("the firmware sent an unknown frame type %d" % ftype)
        return True

    def _gpio_write(self, pin, level):
        self.pins[pin] = level
        if level:
            name = self.pin_names.get(pin)
            if name == "relay_set":
                self.world.pulse_relay(True)
            elif name == "relay_reset":
                self.world.pulse_relay(False)
            elif name == "modem_reset" and self.modem is not None:
                self.modem.reset()
        name = self.pin_names.get(pin)
        if name == "modem_power" and self.modem is not None:
            self.modem.set_power(bool(level))

    def set_cover(self, open_):
        """The terminal cover's switch (pin `cover`: 1 = open)."""
        self.pins[self.info["pins"]["cover"]] = 1 if open_ else 0

    def _gpio_read(self, pin):
        name = self.pin_names.get(pin)
        if name == "relay_feedback":
            return 1 if self.world.relay_closed else 0
        return self.pins.get(pin, 0)

    def _advance(self, stop_at_ms):
        """Advance the world towards the pending ADVANCE's target; reply when reached or input waits."""
        w = self.world
        until = self._pending_until
        while True:
            if self._pending_wake and self._flags():
                break
            if w.now_ms >= until:
                break
            if stop_at_ms is not None and w.now_ms >= stop_at_ms:
                return False
            target = until
            if stop_at_ms is not None and stop_at_ms < target:
                target = stop_at_ms
            nxt = w.next_agenda_ms()
            if nxt is not None and nxt < target:
                target = max(nxt, w.now_ms)
            if self._death_at is not None and self._death_at < target:
                target = max(self._death_at, w.now_ms)
            if self.modem is not None:
                # Network traffic in flight: let the broker answer before virtual time races on.
                self.modem.poll(w.now_ms, 0.5 if self.modem.expecting_reply() else 0.0)
                if self._pending_wake and self.modem.has_data():
                    break
                nm = self.modem.next_event_ms()
                # Only a future instant shortens the step: what is due now was handled by poll(), or
                # is data waiting for a firmware that asked not to be woken.
                if nm is not None and w.now_ms < nm < target:
                    target = nm
            if self.realtime:
                target = self._pace(target)
            w.advance_to(target, stop_on_power=True)
            if self._power_check():
                break
            if self._yield_to_host:
                self._yield_to_host = False
                return False          # as at stop_at_ms: the ADVANCE stays pending until served again
        self._pending_until = None
        flags = self._flags()
        if flags & L.IN_POWER_FAIL:
            self._pf_told = True
        self.link.reply(L.ADVANCE, L.pack_advance_reply(w.now_ms, flags, self._levels()))
        return True

    def _levels(self):
        """The levels of GPIO 0-23 as one mask (see link.py: the board reads pins from it), as
        _gpio_read answers them: the relay's feedback from the world, the others as last set."""
        fb = self._fb_bit
        return (self.pins.mask & ~fb) | (fb if self.world.relay_closed else 0)

    def _power_check(self):
        """The meter is powered by the grid it measures. When the grid fails, the power-fail input
        rises (the firmware is woken) and the supply holds up for the board's hold-up time; then the
        firmware dies. Returns True when the firmware must be woken now."""
        w = self.world
        if w.bench is not None or w.grid_on:
            if self._death_at is not None and w.grid_on:
                # A brown-out shorter than the hold-up: the supply is back before the firmware died.
                self.pins[self.info["pins"]["power_fail"]] = 0
                self._death_at = None
                self._pf_told = False
                self.stats["brownouts_survived"] = self.stats.get("brownouts_survived", 0) + 1
            return False
        if self._death_at is None:
            self.pins[self.info["pins"]["power_fail"]] = 1
            self._death_at = w.now_ms + int(self.info.get("power_fail_holdup_ms", 0))
            self.stats["outages"] = self.stats.get("outages", 0) + 1
            return True
        if w.now_ms >= self._death_at:
            raise _PowerLost()
        return False

    def power_cut(self):
        """The meter loses power at this instant: the MCU dies wherever it is, and the metering chip,
        on the same supply, forgets its registers (what it held and was not read is lost)."""
        self.kill()
        self.reset_cause = "power"
        self._pending_until = None
        self.world.chip.power_on_reset()
        if self.modem is not None:
            self.modem.set_power(False)

    def _outage(self):
        """No supply: the firmware is dead; the world runs on until the grid returns."""
        self.power_cut()
        self._pending_until = None
        self.powered = False
        w = self.world
        while not w.grid_on:
            nxt = w._next_change_ms()
            a = w.next_agenda_ms()
            if a is not None and a < nxt:
                nxt = a
            if self._stop_at is not None and nxt > self._stop_at:
                nxt = self._stop_at
            w.advance_to(max(nxt, w.now_ms + 1), stop_on_power=True)
            if self._stop_at is not None and w.now_ms >= self._stop_at and not w.grid_on:
                return False
        self.pins[self.info["pins"]["power_fail"]] = 0
        self._death_at = None
        self._pf_told = False
        self.powered = True
        return True

    _stop_at = None

    def _pace(self, target):
        """Realtime: wait until the wall clock reaches `target`, or less if the pty brings input."""
        w = self.world
        if self._wall0 is None:
            self._wall0, self._virt0 = time.monotonic(), w.now_ms
        while True:
            now_v = self._virt0 + int((time.monotonic() - self._wall0) * 1000 * self.speed)
            if now_v >= target:
                return target
            wait = min((target - now_v) / 1000.0 / self.speed, 0.05)
            # (not while waiting for a reply of the runner's own: request() would take the early return
            # for silence)
            host = list(self.wake_fds()) if self.wake_fds and not self._for_reply else []
            if self.service.pty_fd is not None or host:
                pty = [self.service.pty_fd] if self.service.pty_fd is not None else []
                r, _, _ = select.select(pty + host, [], [], wait)
                if pty and pty[0] in r:
                    try:
                        data = os.read(self.service.pty_fd, 4096)
                    except OSError:
                        data = b""
                    if data:
                        self._service_in(data)
                        return max(w.now_ms, min(target, now_v))
                elif r:
                    # The host has something to answer (a bench request): end this stretch of serving
                    # now, with the firmware on a clean ADVANCE, instead of at the end of the chunk.
                    self._yield_to_host = True
                    return max(w.now_ms, min(target, now_v))
            else:
                time.sleep(wait)
            if self.tick_hook:
                self.tick_hook()
                if self._flags():
                    return max(w.now_ms, min(target, now_v))

    tick_hook = None
    # Realtime: a callable giving sockets or fds of the host's own (the calibration bench's); when one is
    # readable, _serve returns early so the host can answer it (see live.serve).
    wake_fds = None
    _yield_to_host = False
    _for_reply = False
    reset_cause = "power"     # why the next boot happens (the firmware's board.reset_cause())
    _pending_until = None
    _pending_wake = True
    _death_at = None          # virtual ms at which a failing supply takes the firmware down
    _pf_told = False
    powered = True

    def _serve(self, stop_at_ms=None, until_reply=None):
        """Serve frames until virtual time reaches stop_at_ms (the firmware blocked in ADVANCE past it),
        or the reply with id until_reply arrived."""
        self._stop_at = stop_at_ms
        self._for_reply = until_reply is not None
        while True:
            if not self.powered or (self.world.bench is None and not self.world.grid_on and self.link is None):
                if not self._outage():
                    return None
            if self.repl is not None:
                if self._serve_repl(stop_at_ms):
                    return None
                continue
            if self.link is None:
                self.boot()
            if until_reply is not None and until_reply in self.service.replies:
                return self.service.replies.pop(until_reply)
            try:
                if self._pending_until is not None:
                    ok = self._advance(stop_at_ms)
                else:
                    ftype, p = self.link.next_frame()
                    self.stats["frames"] += 1
                    ok = self._handle(ftype, p, stop_at_ms)
            except _PowerLost:
                if not self._outage():
                    return None
                continue
            except (L.LinkClosed, ConnectionError, socket.timeout, _Reboot) as e:
                if not isinstance(e, (_Reboot, socket.timeout)) and self._main_ended():
                    self._enter_repl()
                    continue
                # What the board's reset_cause() says at the next boot: a hang is the watchdog's.
                self._firmware_gone("watchdog" if isinstance(e, socket.timeout) else "reset")
                continue
            except PowerCut:
                self.power_cut()
                self.stats["torn_writes"] = self.stats.get("torn_writes", 0) + 1
                continue
            if not ok:
                return None

    # -- UART0 as the REPL ------------------------------------------------------------------------
    def _service_in(self, data):
        """Bytes from the service pty. A Ctrl-C stops the application if it lets it (keyboard interrupt
        enabled), as on the chip; otherwise it is data for the application."""
        if self._interrupted or self.repl is not None:
            self._repl_backlog += data
            return
        i = data.find(b"\x03")
        if (i >= 0 and self.repl_model and self.proc is not None and self.proc.poll() is None
                and catches_ctrl_c(self.proc.pid)):
            if data[:i]:
                self.service.from_pty(data[:i])
            self._repl_backlog += data[i + 1:]
            self._interrupted = True
            self.stats["keyboard_interrupts"] = self.stats.get("keyboard_interrupts", 0) + 1
            os.kill(self.proc.pid, signal.SIGINT)
            return
        self.service.from_pty(data)

    def _main_ended(self):
        """The firmware process ended by itself (main.py returned or raised), not by a reset or a cut."""
        if not self.repl_model or self.proc is None:
            return False
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return False
        return self.proc.returncode >= 0

    def _enter_repl(self):
        """main.py has ended: UART0 serves the REPL, over the file system as the chip would show it."""
        from host_tools.sim.esp32.repl import ReplSession
        self.stats["repl_sessions"] = self.stats.get("repl_sessions", 0) + 1
        if self.link:
            self.link.close()
            self.link = None
        self._pending_until = None
        root = self.workdir / "uart0-repl"
        root.mkdir(exist_ok=True)
        try:
            files = read_image_files(str(self.flash_path), self.vfs_size, self.flash.block_size, self.flash.offset,
                                     cipher=self.flash.cipher)
        except Exception:  # noqa: BLE001 - a torn file system shows as an empty folder
            files = {}
        for name, data in files.items():
            dst = root / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
        self.repl = ReplSession(root, search_path(root, self.frozen_dir or self.fw_dir), heap=self.heap)
        self._repl_until = self.world.now_ms + self._wdt_ms if self._wdt_ms else None
        self._interrupted = False

    def leave_repl(self):
        """End the REPL (the board is reset): the application boots again at the next frame."""
        if self.repl is not None:
            self.repl.close()
            self.repl = None
            self._repl_until = None
            self._repl_backlog.clear()

    def _serve_repl(self, stop_at_ms):
        """One round of serving UART0's REPL while virtual time runs on. True when stop_at_ms is reached."""
        w = self.world
        if self._repl_backlog:
            self.repl.write(bytes(self._repl_backlog))
            self._repl_backlog.clear()
        pty = self.service.pty_fd
        if pty is not None:
            r, _w, _x = select.select([pty, self.repl.fd], [], [], 0.02)
            if pty in r:
                try:
                    data = os.read(pty, 4096)
                except OSError:
                    data = b""
                if data:
                    self.repl.write(data)
        out = self.repl.read(0 if pty is not None else 0.0)
        if out and pty is not None:
            try:
                os.write(pty, out)
            except OSError:
                pass
        target = w.now_ms + 20
        if self.realtime:
            if self._wall0 is None:
                self._wall0, self._virt0 = time.monotonic(), w.now_ms
            target = max(w.now_ms, self._virt0 + int((time.monotonic() - self._wall0) * 1000 * self.speed))
        elif stop_at_ms is not None:
            target = stop_at_ms
        if stop_at_ms is not None:
            target = min(target, stop_at_ms)
        if self._repl_until is not None:
            target = min(target, self._repl_until)
        w.advance_to(max(target, w.now_ms))
        if out is None or (self._repl_until is not None and w.now_ms >= self._repl_until):
            self.stats["watchdog_resets"] = self.stats.get("watchdog_resets", 0) + (out is not None)
            self.leave_repl()   # the watchdog resets the board (or the REPL itself died)
        if self.tick_hook:
            self.tick_hook()
        return stop_at_ms is not None and w.now_ms >= stop_at_ms

    # -- the LCD ----------------------------------------------------------------------------------
    @property
    def display_lines(self):
        """What the LCD shows now (the frames the board was given to play are shown at their time)."""
        plan = self._display_plan
        if plan and plan[0][0] <= self.world.now_ms:
            lines = None
            while plan and plan[0][0] <= self.world.now_ms:
                lines = plan.pop(0)[1]
            self.display_lines = lines
        return self._display_lines

    @display_lines.setter
    def display_lines(self, lines):
        self._display_lines = lines
        if self.on_display:
            self.on_display(lines)

    def _take_display_plan(self, p):
        if p[0] & 1:
            self.display_lines       # frames already due are shown before the plan is replaced
            self._display_plan = []
        i = 1
        while i + 9 <= len(p):
            at, n = struct.unpack_from("<QB", p, i)
            self._display_plan.append((at, bytes(p[i + 9:i + 9 + n]).decode("utf-8", "replace").split("\n")))
            i += 9 + n

    def _firmware_gone(self, cause="reset"):
        """The process exited, hung or asked to reboot: start it again, as a watchdog or power would."""
        self.display_lines          # the LCD keeps what it showed when the power went; no more frames play
        self._display_plan = []
        crashed = self.proc is not None and self.proc.poll() not in (None, 0)
        self.kill()
        self.reset_cause = cause
        self._pending_until = None
        if crashed and self.boots > 50:
            raise SimulationError("the firmware keeps crashing", hint="see %s:\n%s" % (
                self.log_path, self.firmware_log()))
        if self.proc is not None and self.proc.returncode not in (0, -9, None):
            self.stats["crashes"] = self.stats.get("crashes", 0) + 1
            if self.stats["crashes"] > 20:
                raise SimulationError("the firmware crashed %d times" % self.stats["crashes"],
                                      hint="see %s:\n%s" % (self.log_path, self.firmware_log()))

    # -- what callers use ------------------------------------------------------------------------
    def run_until(self, t_ms):
        """Lockstep: run world and firmware until virtual time t_ms."""
        self._serve(stop_at_ms=t_ms)

    def run_for(self, seconds):
        self.run_until(self.world.now_ms + int(seconds * 1000))

    def request(self, cmd, timeout_virtual_s=60, **args):
        """Send a service request through the meter's service UART and wait for its reply."""
        rid = self.service.request(cmd, **args)
        deadline = self.world.now_ms + timeout_virtual_s * 1000
        while True:
            got = self._serve(stop_at_ms=deadline, until_reply=rid)
            if got is not None:
                return got
            raise SimulationError("the meter did not answer %r within %d simulated seconds" % (
                cmd, timeout_virtual_s), hint="see %s" % self.log_path)

    def press(self, key):
        self.keys.append(key)


class _Reboot(Exception):
    pass


class _PowerLost(Exception):
    pass
