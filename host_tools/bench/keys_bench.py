"""Benchmark: DKGA04 decoder keys derived inside the PKCS#11 module (CKM_SHA256_HMAC sign on the vending
key, SoftHSM2 unless a module is configured) against the same HMAC in this process (what the tools did
before the key moved into the module), per key; and what a fresh session costs (load, find the token,
log in, find the key), as a one-shot `meterkit vend sts` pays it."""
import hashlib
import hmac
import os
import tempfile
import time

N = int(os.environ.get("KEYS_BENCH_N", "5000"))
PAN_BASE = 60072700000000000


def _pans(n):
    from host_tools.vend.dkga04 import luhn_check_digit
    return [str(PAN_BASE + i) + luhn_check_digit(str(PAN_BASE + i)) for i in range(n)]


def run(n=N):
    from host_tools.keys import softhsm, vendingkey
    from host_tools.keys.settings import resolve
    from host_tools.vend import dkga04
    with tempfile.TemporaryDirectory(prefix="keys-bench-") as d:
        softhsm.ensure_vending_module(d)       # the configured module, else a throwaway SoftHSM token
        pans = _pans(n)
        t0 = time.perf_counter()
        vk = vendingkey.VendingKey(resolve())
        session_ms = (time.perf_counter() - t0) * 1000
        try:
            t0 = time.perf_counter()
            for p in pans:
                vk.decoder_key("123457", 1, 1, 2, p, "14")
            module_s = time.perf_counter() - t0
        finally:
            vk.close()
        soft_key = os.urandom(20)
        t0 = time.perf_counter()
        for p in pans:          # the same work as decoder_key: the checked KDF input, then the HMAC
            hmac.new(soft_key, dkga04.kdf_message("123457", 1, 1, 2, p, "14"), hashlib.sha256).digest()[:16]
        soft_s = time.perf_counter() - t0

    return {"keys_dkga04_in_module_per_second": round(n / module_s),
            "keys_dkga04_in_module_us": round(module_s / n * 1e6, 1),
            "keys_dkga04_in_process_us": round(soft_s / n * 1e6, 1),
            "keys_session_open_ms": round(session_ms, 1), "keys_bench_n": n}


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
