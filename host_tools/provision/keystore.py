"""The keystore file the utility gives the factory: the IIN that starts every PAN, the head-end broker
the meters report to, the STS identifiers, and which PKCS#11 token holds the vending key the decoder
keys are derived from (DKGA04 runs inside it). The file holds no secret.

```json
{"iin": "600727", "broker": {"host": "mqtt.example.net", "port": 1883},
 "sgc": "123457", "ti": 1, "krn": 1, "kt": 2, "ken": 255, "base_date": "14",
 "hsm": {"module": "/usr/lib/softhsm/libsofthsm2.so", "token": "meterkit", "key": "vending"}}
```
`iin` and `broker` are required; `sgc`/`ti` are defaults for `--sgc`/`--ti`; `krn` (1), `kt` (2,
DUTK), `ken` (255), `base_date` ("14") and `hsm` (else $METERKIT_PKCS11_MODULE, $METERKIT_HSM_TOKEN,
$METERKIT_HSM_SLOT, $METERKIT_HSM_KEY and the defaults) are optional. The PIN is $METERKIT_HSM_PIN or a
prompt. A file that still has `vending_key_hex` is refused: import the key once with `meterkit keys
import`."""
import json

from host_tools.errors import UsageError
from host_tools.keys import vendingkey
from host_tools.vend import dkga04

_HINT = "see the keystore format in docs/factory.md (iin, broker {host, port}, hsm)"


def _bad(path, what):
    return UsageError(f"keystore {path}: {what}", hint=_HINT)


def load(path):
    """The checked keystore as a dict (vending_key: the key's handle in the secure module); UsageError
    saying what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            ks = json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read keystore {path}: {e.strerror}", hint="give --keystore FILE") from None
    except ValueError as e:
        raise _bad(path, f"not JSON ({e})") from None
    if not isinstance(ks, dict):
        raise _bad(path, "must be a JSON object")
    vendingkey.refuse_plain_key(ks, f"keystore {path}")
    iin = str(ks.get("iin", ""))
    if not iin.isdigit() or not 1 <= len(iin) <= 10:
        raise _bad(path, "iin must be the issuer identification number, digits (e.g. 600727)")
    broker = ks.get("broker")
    if not isinstance(broker, dict) or not isinstance(broker.get("host"), str) or not broker["host"]:
        raise _bad(path, "broker must be an object with host and port")
    port = broker.get("port", 1883)
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise _bad(path, "broker port must be 1..65535")
    out = {"iin": iin, "broker": {"host": broker["host"], "port": port},
           "sgc": ks.get("sgc"), "ti": ks.get("ti"), "krn": ks.get("krn", 1), "kt": ks.get("kt", 2),
           "ken": ks.get("ken", 255), "base_date": str(ks.get("base_date", "14"))}
    if out["base_date"] not in dkga04.BASE_DATES:
        raise _bad(path, f"base_date {out['base_date']!r} must be one of {', '.join(sorted(dkga04.BASE_DATES))}")
    for name, lo, hi in (("krn", 1, 9), ("kt", 0, 3), ("ken", 0, 255)):
        if not isinstance(out[name], int) or not lo <= out[name] <= hi:
            raise _bad(path, f"{name} must be an integer {lo}..{hi}")
    out["vending_key"] = vendingkey.from_keystore(ks, f"keystore {path}")   # last: the file is sound first
    return out


def pan_for(iin, serial):
    """The 18-digit PAN: IIN + serial zero-padded to fill 17 digits + Luhn check digit."""
    width = 17 - len(iin)
    body = str(int(serial)).rjust(width, "0")
    if len(body) > width:
        raise UsageError(f"serial {serial} needs more than the {width} digits the IIN {iin} leaves",
                         hint="use a smaller serial or a shorter IIN")
    body = iin + body
    return body + dkga04.luhn_check_digit(body)
