"""Factory line throughput with provisioning, on a real-size image: boards per hour for flash (a
valid 1.5 MB combined image and the frozen layout's file system, encrypted on the host with a fresh
key per board and the sealing eFuses burnt: esptool/espsecure/espefuse onto simulated ESP32s) + boot
(the simulated chip checks the image, decrypts, mounts the file system) + provision (keys, read-back,
key checks, lock) + self-test, one board at a time and four at once. Measures the host side and the
simulated firmware in realtime; a real board adds its 115200-baud flashing (see factory_bench).

The same line again with secure boot v2 added (`--secure-boot-key`: bootloader and app signed with an
RSA-3072 key by espsecure before encryption, the key digest and ABS_DONE_1 burnt after the flash
encryption eFuses; the chip verifies both signatures at every boot): the `_secure_boot` figures.

The firmware heap is METER_BENCH_HEAP (default: the simulator's own, reported as factory_line_heap_kb)."""
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from host_tools.bench.factory_bench import APP_BYTES, BOARD, real_size_firmware
from host_tools.build.builder import build
from host_tools.flash import imagegen, parttable, secureboot
from host_tools.keys.softhsm import ensure_vending_module
from host_tools.paths import board_dir
from host_tools.provision.line import provision
from host_tools.provision.simline import SimMeterProcess, flash_boards, heap_env
from host_tools.sim.esp32.runner import DEFAULT_HEAP

ROUNDS = 2           # batches per measurement


def _batch(tmp, n, first, firmware, image, keystore, db, env, **opts):
    flashes = flash_boards(tmp, n, firmware, image, first_index=first, seal=True, **opts)
    meters = [None] * n
    errors = []

    def station(i):
        try:
            meters[i] = SimMeterProcess(flashes[i], tmp / f"meter{first + i}", seed=first + i + 1, env=env)
            provision(meters[i].port, keystore, sgc="123457", ti=1, operator="bench", db=db)
        except Exception as e:  # noqa: BLE001 - counted, the benchmark reports it
            errors.append(e)
    threads = [threading.Thread(target=station, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for m in meters:
        if m:
            m.stop()
    if errors:
        raise RuntimeError(f"the line failed during the benchmark: {errors[0]}")


def _boards_per_hour(tmp, n, firmware, image, keystore, db, env, first, **opts):
    t0 = time.monotonic()
    for r in range(ROUNDS):
        _batch(tmp, n, first + r * n, firmware, image, keystore, db, env, **opts)
    return round(3600 * n * ROUNDS / (time.monotonic() - t0), 1)


def run():
    heap = os.environ.get("METER_BENCH_HEAP")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        build("sim", tmp / "build", versions={}, frozen=True)
        firmware = tmp / "firmware.bin"
        firmware.write_bytes(real_size_firmware())
        ensure_vending_module(str(tmp))      # the configured module, else a throwaway SoftHSM token
        keystore = tmp / "keystore.json"
        keystore.write_text(json.dumps({"iin": "600727", "broker": {"host": "127.0.0.1", "port": 1883}}))
        env = heap_env(tmp, heap)
        db = str(tmp / "records.sqlite")
        image = tmp / "build" / "fs.img"
        one = _boards_per_hour(tmp, 1, firmware, image, str(keystore), db, env, 0)
        four = _boards_per_hour(tmp, 4, firmware, image, str(keystore), db, env, 100)
        fw_bytes = firmware.stat().st_size
        # secure boot v2: the bootloader must take its 4 KB signature sector before the table at 0x8000
        sb_firmware = tmp / "firmware-sb.bin"
        table = parttable.from_csv((board_dir(BOARD) / "partitions.csv").read_text())
        sb_firmware.write_bytes(imagegen.combined(app_size=APP_BYTES, entries=table,
                                                  boot=imagegen.bootloader(size=20 * 1024)))
        secureboot.generate_signing_key(tmp / "secure-boot.pem")
        sb = dict(secure_boot_key=str(tmp / "secure-boot.pem"))
        one_sb = _boards_per_hour(tmp, 1, sb_firmware, image, str(keystore), db, env, 200, **sb)
        four_sb = _boards_per_hour(tmp, 4, sb_firmware, image, str(keystore), db, env, 300, **sb)
    used = heap or DEFAULT_HEAP
    return {"factory_boards_per_hour_1": one, "factory_boards_per_hour_4_parallel": four,
            "factory_boards_per_hour_1_secure_boot": one_sb, "factory_boards_per_hour_4_parallel_secure_boot": four_sb,
            "factory_line_firmware_bytes": fw_bytes, "factory_line_sealed": True,
            "factory_line_heap_kb": int(str(used).rstrip("kK"))}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
