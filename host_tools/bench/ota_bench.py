"""Firmware updates: the meter's signature check under the unix-port MicroPython (RSA-2048 as shipped, and
what Ed25519 and ECDSA P-256 verifies would cost in pure MicroPython, from timed scalar multiplications),
an estimate for a 240 MHz ESP32, one meter's update over the simulated cellular link (as it always was,
and over a 2G-class bearer), the final read-back hash of the slot, and a campaign.

Keys: ota_rsa2048_verify_ms, ota_offer_check_ms, ota_ed25519_verify_ms_est, ota_p256_verify_ms_est,
ota_rsa2048_verify_esp32_ms_est, ota_update_download_sim_s, ota_update_campaign_sim_s,
ota_update_image_bytes, ota_update_bytes_per_sim_s;
over the `2g` bearer (host_tools/sim/modem/linkprofile.py: typical GPRS class 10 figures, 40 kbit/s down,
20 kbit/s up, 650 ms round trip): ota_update_download_2g_sim_s, ota_update_2g_bytes_per_sim_s,
ota_update_campaign_2g_sim_s, ota_update_download_2g_1p5mb_sim_s_est (a 1.5 MiB image at the same
pace); during that download, on the first meter: ota_worst_loop_busy_during_download_ms (the longest the
superloop stayed busy in one wake, unix port, wall ms: what a metering poll falling due or a key press
waits at most), its _esp32_ms_est (x40), ota_worst_loop_busy_after_update_ms (the same measure over the
last 50 s, the update done: the baseline), ota_worst_poll_gap_during_download_sim_ms (virtual ms between
two metering polls; the period is 5,000 ms); the read-back: ota_readback_sha_ms (the bench image's
slot hashed by the updater's _slot_sha, unix port), ota_readback_sha_1p5mb_ms and its _esp32_ms_est;
run_campaign: ota_campaign100_* (100 meters, 30 % drops, 30 cuts)."""
import json
import subprocess
import tempfile
from pathlib import Path

from host_tools.paths import FIRMWARE, micropython_bin

# A 240 MHz Xtensa LX6 runs MicroPython bytecode and 16-bit-digit big-int arithmetic roughly this many
# times slower than one core of this 2.6 GHz Xeon (clock ratio ~11, instructions per clock ~3-4x): an
# estimate, stated as one, until the figure is measured on a board.
ESP32_SLOWER = 40

_TIMING = r'''
import time, json
from ota import rsa, offer
N = int(NHEX, 16)
t = time.ticks_us()
for i in range(REPS):
    ok = rsa.verify(N, 65537, SIG, MSG)
rsa_us = time.ticks_diff(time.ticks_us(), t) / REPS
t = time.ticks_us()
for i in range(REPS):
    code = offer.check(OFFER, TRUST, "sim", "0.1.0", None, 0x180000)[0]
offer_us = time.ticks_diff(time.ticks_us(), t) / REPS

# Ed25519 in pure MicroPython: one scalar multiplication on edwards25519 (extended coordinates,
# double-and-add over 253 bits, reduced mod p each step), and the square root exponent of point
# decompression. A verify needs two scalar multiplications and one decompression.
P = 2**255 - 19
D = (-121665 * pow(121666, P - 2, P)) % P
def add(a, b):
    x1, y1, z1, t1 = a; x2, y2, z2, t2 = b
    A = (y1 - x1) * (y2 - x2) % P; B = (y1 + x1) * (y2 + x2) % P
    C = 2 * D * t1 * t2 % P; Dd = 2 * z1 * z2 % P
    E = B - A; F = Dd - C; G = Dd + C; H = B + A
    return (E * F % P, G * H % P, F * G % P, E * H % P)
def smul(k, pt):
    q = (0, 1, 1, 0)
    for i in range(252, -1, -1):
        q = add(q, q)
        if (k >> i) & 1:
            q = add(q, pt)
    return q
GY = 4 * pow(5, P - 2, P) % P
GX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
G = (GX, GY, 1, GX * GY % P)
k = (1 << 252) + 0x14def9dea2f79cd65812631a5cf5d3ed - 12345
t = time.ticks_us(); smul(k, G); ed_smul_us = time.ticks_diff(time.ticks_us(), t)
t = time.ticks_us(); pow(GY, (P - 5) // 8, P); ed_sqrt_us = time.ticks_diff(time.ticks_us(), t)

# ECDSA P-256: Jacobian doubling and mixed addition, double-and-add over 256 bits; a verify needs
# two scalar multiplications and one inversion mod n.
Q = 2**256 - 2**224 + 2**192 + 2**96 - 1
NN = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
PX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296
PY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5
def jdbl(p):
    x, y, z = p
    if y == 0: return (0, 1, 0)
    s = 4 * x * y * y % Q; zz = z * z % Q
    m = 3 * (x - zz) * (x + zz) % Q
    x3 = (m * m - 2 * s) % Q
    return (x3, (m * (s - x3) - 8 * pow(y, 4, Q)) % Q, 2 * y * z % Q)
def jadd(p, ax, ay):
    x, y, z = p
    if z == 0: return (ax, ay, 1)
    zz = z * z % Q; u2 = ax * zz % Q; s2 = ay * zz * z % Q
    h = (u2 - x) % Q; r = (s2 - y) % Q
    hh = h * h % Q; hhh = h * hh % Q
    x3 = (r * r - hhh - 2 * x * hh) % Q
    return (x3, (r * (x * hh - x3) - y * hhh) % Q, z * h % Q)
def psmul(k):
    q = (0, 1, 0)
    for i in range(255, -1, -1):
        q = jdbl(q)
        if (k >> i) & 1:
            q = jadd(q, PX, PY)
    return q
t = time.ticks_us(); psmul(NN - 98765); p_smul_us = time.ticks_diff(time.ticks_us(), t)
t = time.ticks_us(); pow(NN - 5, NN - 2, NN); p_inv_us = time.ticks_diff(time.ticks_us(), t)
print(json.dumps({"ok": ok, "code": code, "rsa_us": rsa_us, "offer_us": offer_us, "ed_smul_us": ed_smul_us,
                  "ed_sqrt_us": ed_sqrt_us, "p_smul_us": p_smul_us, "p_inv_us": p_inv_us}))
'''


def verify_costs(reps=50):
    from host_tools.flash import imagegen
    from host_tools.ota import keys, package
    with tempfile.TemporaryDirectory() as d:
        keys.generate(Path(d) / "k.pem")
        key = keys.load_private(Path(d) / "k.pem")
    pkg = package.parse(package.build(imagegen.app(16 * 1024), "sim", "0.2.0", key))
    trust = keys.trust_entry_file([key.public_key()])["keys"]
    code = ("NHEX = %r\nSIG = %r\nMSG = %r\nOFFER = %r\nTRUST = %s\nREPS = %d\n" % (
        "%x" % key.public_key().public_numbers().n, pkg.signature, pkg.header_bytes, pkg.offer,
        json.dumps(trust), reps)) + _TIMING
    p = subprocess.run([micropython_bin(), "-X", "heapsize=128k", "-c", code], capture_output=True, text=True,
                       timeout=600, env={"MICROPYPATH": str(FIRMWARE)})
    if p.returncode:
        raise RuntimeError(p.stderr)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    if not r["ok"] or r["code"] != "accepted":
        raise RuntimeError("the meter's check refused a good signature: %s" % r)
    rsa_ms = r["rsa_us"] / 1000
    return {"ota_rsa2048_verify_ms": round(rsa_ms, 3), "ota_offer_check_ms": round(r["offer_us"] / 1000, 3),
            "ota_ed25519_verify_ms_est": round((2 * r["ed_smul_us"] + r["ed_sqrt_us"]) / 1000, 1),
            "ota_p256_verify_ms_est": round((2 * r["p_smul_us"] + r["p_inv_us"]) / 1000, 1),
            "ota_rsa2048_verify_esp32_ms_est": round(rsa_ms * ESP32_SLOWER, 1),
            "ota_ed25519_verify_esp32_ms_est": round((2 * r["ed_smul_us"] + r["ed_sqrt_us"]) / 1000 * ESP32_SLOWER),
            "ota_p256_verify_esp32_ms_est": round((2 * r["p_smul_us"] + r["p_inv_us"]) / 1000 * ESP32_SLOWER)}


_READBACK = r'''
import time, esp32
from ota.updater import Updater


class Store:
    def load(self, name):
        raise OSError(2)

    def commit(self, name, obj):
        pass


class Clock:
    def ticks_ms(self):
        return 0

    def ticks_add(self, a, b):
        return a + b

    def ticks_diff(self, a, b):
        return a - b


u = Updater(Store(), esp32.Partition, Clock(), lambda k, d: None, "sim", "0.1.0", [])
u.part = esp32.Partition("ota_1")
out = []
for n in SIZES:
    best = None
    for i in range(REPS):
        t = time.ticks_us()
        u._slot_sha(n)
        dt = time.ticks_diff(time.ticks_us(), t)
        best = dt if best is None or dt < best else best
    out.append(best)
print(out)
'''

MIB_1P5 = 0x180000      # a 1.5 MiB image: the whole of the board's OTA slot


def readback_costs(image_bytes, reps=5):
    """How long the updater's final read-back hash (`Updater._slot_sha`, all of it in one job run) blocks
    on the unix port, through the simulated ESP32's esp32.Partition, for the bench image and a 1.5 MiB
    one (best of `reps`)."""
    import os
    from host_tools.flash import imagegen
    from host_tools.sim.esp32 import otachip
    with tempfile.TemporaryDirectory() as d:
        chip = Path(d) / "chip.img"
        otachip.create(chip, imagegen.app(48 * 1024, version="0.1.0", seed=5))
        code = "SIZES = (%d, %d)\nREPS = %d\n" % (image_bytes, MIB_1P5, reps) + _READBACK
        env = dict(os.environ, MICROPYPATH=":".join([str(FIRMWARE), str(otachip.SHIM_DIR)]), METER_CHIP=str(chip),
                   METER_RUNNING_SLOT="ota_0")
        p = subprocess.run([micropython_bin(), "-X", "heapsize=128k", "-c", code], capture_output=True, text=True,
                           timeout=600, env=env)
    if p.returncode:
        raise RuntimeError(p.stderr)
    small, big = json.loads(p.stdout.strip().splitlines()[-1])
    return {"ota_readback_sha_ms": round(small / 1000, 2), "ota_readback_sha_1p5mb_ms": round(big / 1000, 2),
            "ota_readback_sha_1p5mb_esp32_ms_est": round(big / 1000 * ESP32_SLOWER)}


def run():
    from host_tools.sim.scenarios import ota as ota_scenario
    out = verify_costs()
    r = ota_scenario.run(meters=1, seed=1)
    if r["updated"] != 1:
        raise RuntimeError("the single-meter update did not complete: %s" % r["targets"])
    out.update(ota_update_download_sim_s=r["max_download_sim_s"], ota_update_campaign_sim_s=r["campaign_sim_s"],
               ota_update_image_bytes=r["image_bytes"],
               ota_update_bytes_per_sim_s=round(r["image_bytes"] / r["max_download_sim_s"]),
               ota_update_wall_s=r["wall_s"])
    out.update(run_2g())
    out.update(readback_costs(r["image_bytes"]))
    return out


def run_2g(seed=1):
    """One meter's update over the 2G-class bearer, with its superloop timed during the download."""
    from host_tools.sim.scenarios import ota as ota_scenario
    r = ota_scenario.run(meters=1, seed=seed, link="2g", timing=True)
    if r["updated"] != 1:
        raise RuntimeError("the single-meter update over 2G did not complete: %s" % r["targets"])
    rate = r["image_bytes"] / r["max_download_sim_s"]
    dl, after = r["loop"]["download"], r["loop"]["after"]
    return {"ota_update_download_2g_sim_s": r["max_download_sim_s"], "ota_update_2g_bytes_per_sim_s": round(rate),
            "ota_update_campaign_2g_sim_s": r["campaign_sim_s"],
            "ota_update_download_2g_1p5mb_sim_s_est": round(MIB_1P5 / rate),
            "ota_worst_loop_busy_during_download_ms": dl["worst_busy_ms"],
            "ota_worst_loop_busy_during_download_esp32_ms_est": round(dl["worst_busy_ms"] * ESP32_SLOWER),
            "ota_worst_loop_busy_after_update_ms": after["worst_busy_ms"],
            "ota_worst_poll_gap_during_download_sim_ms": dl["worst_poll_gap_sim_ms"],
            "ota_update_2g_wall_s": r["wall_s"]}


def run_campaign_small():
    """`make bench`: the campaign with 20 meters and 6 cuts (`make bench-long`: 100 and 30)."""
    return run_campaign(meters=20, cuts=6)


def run_campaign(meters=100, drop=0.3, cuts=30, seed=1, link=None):
    """`link`: the meters' bearer ("lte", the default, or "2g"; host_tools/sim/modem/linkprofile.py)."""
    from host_tools.sim.scenarios import ota as ota_scenario
    r = ota_scenario.run(meters=meters, drop=drop, cuts=cuts, seed=seed, stages=(1, 10, 100), threshold_pct=90,
                         link=link)
    p = "ota_campaign%d_" % meters
    return {p + k: r[k] for k in ("meters", "updated", "rolled_back", "refused", "bricked", "credit_violations",
                                  "max_download_sim_s", "campaign_sim_s", "wall_s", "chunks_lost")} | {
        p + "cuts": len(r["cuts"])}
