"""Token decoding costs under the unix-port MicroPython, and false-accept rates of random entries.

Keys: sts_decode_ms; opaygo_decode_ms_count_{1,1000,100000} (the customer's next token when the
meter's last count is N and the token's value was accepted before: the kept chain state);
opaygo_new_value_decode_ms_count_N (a value never accepted: the all-values table);
opaygo_guess_ms_count_N (a wrong 9-digit entry); opaygo_table_catch_up_ms_per_count;
siphash_us; sts_random_false_accept_rate (vs 2**-16) and opaygo_random_false_accept_rate.
"""
import json
import random
import subprocess

from host_tools.fwimport import firmware_module
from host_tools.paths import FIRMWARE, micropython_bin

KEY = bytes.fromhex("bc41ec9530f6dac86b1a29ab82edc5fb")
START = 516959010
STS_KEY = bytes.fromhex("f94b6ed353c3bfdb113e2d3a7ea3c41d")
STS_TOKEN = "59386323472137426967"
COUNTS = (1, 1000, 100000)
SEEN, NEW = 7, 9  # token values: one the meter accepted before, one it never saw


def _mpy(code, heap="256k"):
    proc = subprocess.run([micropython_bin(), "-X", f"heapsize={heap}", "-c", code], capture_output=True,
                          text=True, timeout=1800, env={"MICROPYPATH": str(FIRMWARE)})
    if proc.returncode:
        raise RuntimeError(proc.stderr)
    return proc.stdout


def _chain(op, base, count):
    """Chain value (natural digits) of this base at count, walked on the host."""
    code = op._seed(0, base)
    for _ in range(count):
        code = op._next(code)
    return code


def _opaygo_state(n):
    """State bytes, table bytes and tokens for a meter whose last count is n (computed on the host
    with the firmware's own code; only the table entry of the NEW value is filled in, which is all
    a decode of that value reads)."""
    opaygo = firmware_module("tokens.opaygo")
    op = opaygo.OpenPaygo(KEY, START, n, auto_catch_up=False)
    b_seen = (START + SEEN) % 1000
    b_new = (START + NEW) % 1000
    lo = max(0, n - 15)
    nxt = n + 2 if n % 2 == 0 else n + 1  # the next ADD count
    if n > 1:
        lo_code = _chain(op, b_seen, lo)
        hi_code = lo_code
        for _ in range(n - lo):
            hi_code = op._next(hi_code)
        op._cache = [[0, b_seen, lo, lo_code, n, hi_code]]
        op._table_count = lo
        op._table[b_new] = _chain(op, b_new, lo)
    tok_seen = op.code_at(b_seen, nxt) if n <= 1 else _step_from(op, hi_code, n, nxt, b_seen)
    tok_new = op.code_at(b_new, nxt) if n <= 1 else _step_from(op, op._table[b_new], lo, nxt, b_new)
    return op.state_bytes(), op.table_bytes(), "%09d" % tok_seen, "%09d" % tok_new


def _step_from(op, code, frm, to, base):
    for _ in range(to - frm):
        code = op._next(code)
    return code - code % 1000 + base


_MP_CODE = """
import time, binascii
from tokens import sts
from tokens.opaygo import OpenPaygo
from tokens.siphash import SipHash24
out = {}
key = binascii.unhexlify('%(sts_key)s')
R = 300
t = time.ticks_us()
for i in range(R):
    tok = sts.decode(key, '%(sts_token)s')
out['sts_decode_ms'] = time.ticks_diff(time.ticks_us(), t) / R / 1000
assert tok.crc_ok
s = SipHash24(key)
t = time.ticks_us()
for i in range(5000):
    s.hash8(i, i)
out['siphash_us'] = time.ticks_diff(time.ticks_us(), t) / 5000
def timed(d, tok, want, R=50):
    t = time.ticks_us()
    for i in range(R):
        r = d.decode(tok)
    assert r.status == want, (tok, r.status)
    return time.ticks_diff(time.ticks_us(), t) / R / 1000, d.hashes
for n, state, table, seen, new in %(cases)s:
    d = OpenPaygo(binascii.unhexlify('%(op_key)s'), %(start)d, auto_catch_up=False)
    d.load_state(binascii.unhexlify(state))
    d.load_table(binascii.unhexlify(table))
    out['opaygo_decode_ms_count_%%d' %% n], out['opaygo_decode_hashes_count_%%d' %% n] = timed(d, seen, 'accepted')
    out['opaygo_new_value_decode_ms_count_%%d' %% n], out['opaygo_new_value_hashes_count_%%d' %% n] = timed(d, new, 'accepted')
    out['opaygo_guess_ms_count_%%d' %% n], out['opaygo_guess_hashes_count_%%d' %% n] = timed(d, '%%09d' %% ((int(seen) + 500) %% 10**9), 'invalid')
d = OpenPaygo(binascii.unhexlify('%(op_key)s'), %(start)d, 100, auto_catch_up=False)
t = time.ticks_us()
d.catch_up(3)
out['opaygo_table_catch_up_ms_per_count'] = time.ticks_diff(time.ticks_us(), t) / 3 / 1000
import json
print(json.dumps(out))
"""


def _false_accept_sts(n, seed=1):
    sts = firmware_module("tokens.sts")
    rng = random.Random(seed)
    in_range = hits = 0
    for _ in range(n):
        t = sts.decode(STS_KEY, "%020d" % rng.randrange(10 ** 20))
        in_range += t.in_range
        hits += t.crc_ok
    return hits, in_range


def _false_accept_opaygo(n, seed=2):
    # The set of every 9-digit token a fresh device accepts (all values, counts 1..64), read from
    # the decoder's own all-values table as it advances; then random entries against it.
    opaygo = firmware_module("tokens.opaygo")
    op = opaygo.OpenPaygo(KEY, START, 0, auto_catch_up=False)
    good = set()
    for count in range(1, 65):
        op.last_count = count + 15
        op.catch_up(1)
        for b in range(1000):
            c = op._table[b]
            good.add(c - c % 1000 + b)
    rng = random.Random(seed)
    return sum(rng.randrange(10 ** 9) in good for _ in range(n))


def run():
    cases = []
    for n in COUNTS:
        state, table, seen, new = _opaygo_state(n)
        cases.append((n, state.hex(), table.hex(), seen, new))
    code = _MP_CODE % {"sts_key": STS_KEY.hex(), "sts_token": STS_TOKEN, "op_key": KEY.hex(), "start": START,
                       "cases": repr(cases)}
    out = json.loads(_mpy(code).strip().splitlines()[-1])
    res = {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}
    res["opaygo_count_100000_vs_1_ratio"] = round(res["opaygo_decode_ms_count_100000"] / res["opaygo_decode_ms_count_1"], 3)
    n = 1_000_000
    hits, in_range = _false_accept_sts(n)
    res["sts_random_strings"] = n
    res["sts_random_in_range"] = in_range
    res["sts_random_crc_passes"] = hits
    res["sts_random_false_accept_rate"] = hits / in_range
    res["sts_crc_predicted_rate"] = 2 ** -16
    m = 5_000_000
    ohits = _false_accept_opaygo(m)
    res["opaygo_random_strings"] = m
    res["opaygo_random_false_accept_rate"] = ohits / m
    res["opaygo_predicted_rate"] = 64e-6
    return res


if __name__ == "__main__":
    for k, v in sorted(run().items()):
        print(f"{k:45s} {v}")
