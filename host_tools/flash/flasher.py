"""Flash MicroPython and the application image onto ESP32 boards with esptool used as a library:
check the firmware file as a bootloader would (before any board is touched), detect the chip and
check it is the board's MCU, read the board's flash size, lay the file system for it, write both
images, verify them by MD5, reset.
Many ports at once, each in its own thread with its own progress bar; one board failing never
stops the others."""
import hashlib
import os
import threading
import time

from esptool.cmds import attach_flash, detect_chip, detect_flash_size, reset_chip, write_flash
from esptool.util import FatalError
from serial import SerialException

from host_tools.errors import DeviceError, MeterkitError, UsageError
from host_tools.flash import progress
from host_tools.flash import seal as sealing
from host_tools.flash import secureboot
from host_tools.flash.espimage import ImageError
from host_tools.flash.layout import parse_flash_size, plan_flash


def _chip_matches(chip_name, mcu):
    return chip_name.lower().replace("-", "") == str(mcu).lower().replace("-", "")


def _device_error(port, stage, err):
    """Turn what esptool raised into a message a line operator can act on."""
    text = str(err)
    low = text.lower()
    if "could not open" in low or "no such file" in low or "errno 2" in low:
        return DeviceError("no such port", hint="check the cable and the port name")
    if "magic value" in low or "autodetect" in low:
        return DeviceError(f"wrong chip: {text.splitlines()[0]}",
                           hint="this is not an ESP32 board; take it off the line")
    if "md5 of file does not match" in low or "written flash region is empty" in low:
        return DeviceError(f"verify mismatch in the {stage} image: {text.splitlines()[0]}",
                           hint="reflash this board; if it fails again its flash chip is bad")
    if "failed to connect" in low:
        return DeviceError(f"the board does not answer ({text.splitlines()[0]})",
                           hint="hold BOOT while resetting so the board is in download mode")
    if stage in ("firmware", "fs") and ("timed out" in low or "serial" in low or "packet" in low):
        return DeviceError(f"the board stopped answering while writing the {stage} image "
                           f"({text.splitlines()[0]})", hint="check power and cable, then reflash it")
    return DeviceError(f"{stage} failed: {text.splitlines()[0] if text else type(err).__name__}",
                       hint="see the board's log in the result")


def _can_toggle_lines(port):
    if port.startswith(("socket://", "rfc2217://")):
        return False
    real = os.path.realpath(port)
    return not (real.startswith("/dev/pts/") or real == "/dev/ptmx")


def _with_block_timeout(esp, seconds):
    """A ROM writes a 1 KB block in milliseconds; esptool waits 3 s (x3 attempts) before calling a
    board dead. A line may want to give up sooner."""
    for name in ("flash_block", "flash_defl_block"):
        orig = getattr(esp, name)

        def bounded(data, seq, timeout=None, _orig=orig, **kw):
            return _orig(data, seq, timeout=seconds, **kw)
        setattr(esp, name, bounded)


def _check_secure_boot_silicon(port, esp, skip_old):
    """Secure boot v2 needs ESP32 silicon revision 3. True when this board gets it, False when it is
    older and the line said to seal it without; otherwise refused before anything is written."""
    rev = esp.get_chip_revision()
    if rev >= 300:
        return True
    if skip_old:
        return False
    raise DeviceError(f"refused, nothing written: silicon revision v{rev // 100}.{rev % 100} has no secure "
                      "boot v2 (it needs v3.0 or later)",
                      hint="put a v3 board on the line, or pass --skip-secure-boot-on-old-silicon to seal this one "
                           "with flash encryption only")


def flash_board(port, plan, log=None, compress=True, block_timeout=None, connect_attempts=3, seal=False,
                keep_download_mode=False, secure_boot_pem=None, skip_secure_boot_on_old_silicon=False):
    """Flash one board. `plan` comes from plan_flash(). With seal=True the images are encrypted on the
    host with a fresh key and the sealing eFuses burnt afterwards (host_tools.flash.seal); with
    secure_boot_pem too (the plan's firmware already signed by flash_many), secure boot v2 is enabled
    with that key's digest, on silicon revision 3 only. Returns a result dict; raises DeviceError."""
    info = plan.info
    log = log or progress.BoardLog()
    log.done_images = 0
    progress.bind(log)
    result = {"port": port, "ok": False}
    stage = "connect"
    esp = None
    try:
        if not port.startswith(("socket://", "rfc2217://")) and not os.path.exists(port):
            raise DeviceError("no such port", hint="check the cable and the port name")
        try:
            esp = detect_chip(port, connect_mode="no-reset", connect_attempts=connect_attempts)
        except (FatalError, SerialException, OSError) as e:
            raise _device_error(port, stage, e) from None
        result["chip"] = esp.get_chip_description()
        result["mac"] = ":".join(f"{b:02x}" for b in esp.read_mac())
        if not _chip_matches(esp.CHIP_NAME, info["mcu"]):
            raise DeviceError(f"wrong chip: found {esp.CHIP_NAME}, board {info.get('name')} "
                              f"needs {info['mcu']}", hint="put this board on the line for its own MCU")
        result["chip_revision"] = esp.get_chip_revision()
        secure_boot = False
        if secure_boot_pem is not None:
            secure_boot = _check_secure_boot_silicon(port, esp, skip_secure_boot_on_old_silicon)
        if block_timeout:
            _with_block_timeout(esp, block_timeout)
        stage = "attach"
        attach_flash(esp)
        stage = "flash size"
        size_text = detect_flash_size(esp)
        if size_text is None:
            raise DeviceError(f"the board's flash chip reports an unknown size (JEDEC id "
                              f"{esp.flash_id():#08x})", hint="this module's flash is not supported; take it off the line")
        flash_size = parse_flash_size(size_text)
        result["flash_size"] = size_text
        try:
            writes = plan.writes_for(flash_size)
        except ImageError as e:
            raise DeviceError(f"refused, nothing written: {e}",
                              hint="use a firmware laid for this module's flash size") from None
        result["vfs_offset"] = writes[-1][0] if writes[-1][2] == "fs" else None
        key = None
        if seal:
            key = sealing.new_key()
            writes = sealing.encrypt_writes(writes, key, plan)
        log.writes = writes
        images = []
        for offset, data, label in writes:
            stage = label
            write_flash(esp, [(offset, data)], compress=compress, no_compress=not compress)
            images.append({"image": label, "offset": offset, "size": len(data),
                           "md5": hashlib.md5(data).hexdigest(), "verified": True})
            log.done_images += 1
        result["images"] = images
        if seal:
            stage = "seal"
            result["efuses"] = sealing.burn(esp, key, keep_download_mode=keep_download_mode,
                                            secure_boot_pem=secure_boot_pem if secure_boot else None)
            result["flash_key_sha256"] = sealing.key_fingerprint(key)
            result["sealed"] = True
            result["secure_boot"] = secure_boot
            if secure_boot:
                result["secure_boot_key_digest"] = secureboot.key_digest(secure_boot_pem).hex()
        stage = "reset"
        if _can_toggle_lines(port):
            try:
                reset_chip(esp, "hard-reset")
                result["reset"] = "hard-reset"
            except (OSError, SerialException, FatalError):
                result["reset"] = "failed: power-cycle the board"
        else:
            # a pty or socket has no RTS line; the board runs the new firmware at its next power-up
            result["reset"] = "not possible on this port: power-cycle the board"
        result["ok"] = True
        return result
    except (FatalError, SerialException) as e:
        raise _device_error(port, stage, e) from None
    finally:
        progress.bind(None)
        if esp is not None:
            try:
                esp._port.close()
            except Exception:
                pass


def flash_many(ports, board, firmware, fs_image=None, show_progress=True, console=None, **opts):
    """Flash every port at once (one thread each). Returns a list of per-port result dicts in the
    order of `ports`; each has ok, and error/hint when it failed. Raises only for problems found
    before any board is touched (bad board name, a firmware file that is not a valid ESP32 image,
    a file system image for another board)."""
    plan = plan_flash(board, firmware, fs_image)  # raises before touching any board
    if opts.get("seal"):
        sealing.check_sealable(plan)
    key_path = opts.pop("secure_boot_key", None)
    if key_path is not None:
        if not opts.get("seal"):
            raise UsageError("--secure-boot-key needs --seal", hint="secure boot without flash encryption leaves "
                             "the keys readable: seal the boards")
        pem = secureboot.read_signing_key(key_path)
        plan.sign_firmware(pem)       # bootloader and app signed once for every board
        opts["secure_boot_pem"] = secureboot.public_pem(pem)   # the boards' steps need only the public half
    # the file system's size depends on each board's flash: the bar counts the 4 MB layout
    total = len(plan.firmware.data) + (plan.info["flash"].get("vfs_size", 0) if plan.files is not None else 0)
    results = [None] * len(ports)

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                   console=console, disable=not show_progress, transient=False)

    def work(i, port):
        task = bar.add_task(f"{port} connecting", total=total)
        log = progress.BoardLog()

        def on_progress(fraction):
            # one bar per board over both images: bytes of finished images + this one's share
            writes = log.writes
            n = log.done_images
            if not writes or n >= len(writes):
                return
            done = sum(len(writes[k][1]) for k in range(n))
            bar.update(task, total=sum(len(w[1]) for w in writes),
                       completed=done + int(fraction * len(writes[n][1])), description=f"{port} {writes[n][2]}")
        log.on_progress = on_progress
        t0 = time.monotonic()
        try:
            r = flash_board(port, plan, log=log, **opts)
            r["mode"] = plan.mode
            if plan.signed:
                r["firmware_sha256"] = hashlib.sha256(plan.firmware.data).hexdigest()  # what was written
            done = sum(len(w[1]) for w in log.writes or ()) or total
            bar.update(task, total=done, completed=done, description=f"{port} done")
        except MeterkitError as e:
            r = {"port": port, "ok": False, "error": e.message, "hint": e.hint}
            bar.update(task, description=f"{port} FAILED")
        except Exception as e:  # a bug or surprise on one board must not take the line down
            r = {"port": port, "ok": False, "error": f"{type(e).__name__}: {e}", "hint": "report this"}
            bar.update(task, description=f"{port} FAILED")
        r["seconds"] = round(time.monotonic() - t0, 3)
        r["log_tail"] = log.lines[-5:]
        results[i] = r

    with progress.routed_esptool_log(), bar:
        threads = [threading.Thread(target=work, args=(i, p), name=f"flash-{p}") for i, p in enumerate(ports)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return results
