"""The manufacturer's update-signing key: RSA-2048 with e = 65537, PKCS#1 v1.5 signatures over SHA-256.
Chosen because the meter verifies one with a single 17-multiplication modular exponentiation in
MicroPython's big ints (docs/ota.md has the measured times against Ed25519 and P-256).

The private key stays offline (PEM, PKCS#8); the meter holds only the public numbers, in a small trust
file (`ota-trust.json`: key id, modulus, exponent) that the production image carries."""
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from host_tools.errors import UsageError
from host_tools.keyfile import read_private_key

KEY_BITS = 2048
EXPONENT = 65537
SCHEME = "rsa2048-pkcs1v15-sha256"


def key_id(public_key):
    """First 8 bytes (hex) of the SHA-256 of the modulus, big-endian: what a package names its signer by."""
    n = public_key.public_numbers().n
    return hashlib.sha256(n.to_bytes(KEY_BITS // 8, "big")).hexdigest()[:16]


def generate(out, force=False):
    """Write a new private key at `out` (mode 0600), its public PEM beside it (`.pub.pem`) and the
    meter's trust file (`.trust.json`). Refuses to overwrite a key unless force."""
    if not str(out).strip() or Path(out).name in ("", ".", ".."):
        raise UsageError(f"--out {out!r} names no file", hint="e.g. --out ota-signing-key.pem")
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder", hint="name the key file, e.g. --out ota-signing-key.pem")
    pub_path, trust_path = public_paths(out)
    if out.exists() and not force:
        raise UsageError(f"{out} already exists", hint="keep the key you have, or pass --force to replace it")
    key = rsa.generate_private_key(public_exponent=EXPONENT, key_size=KEY_BITS)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = key.public_key()
    pub_path.write_bytes(pub.public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    trust_path.write_text(json.dumps(trust_entry_file([pub]), indent=1) + "\n")
    os.replace(tmp, out)
    return {"key": str(out), "public": str(pub_path), "trust": str(trust_path), "key_id": key_id(pub),
            "scheme": SCHEME}


def public_paths(private_path):
    p = Path(private_path)
    stem = p.name[:-4] if p.name.endswith(".pem") else p.name
    return p.with_name(stem + ".pub.pem"), p.with_name(stem + ".trust.json")


def load_private(path):
    _pem, key = read_private_key(path, "signing key", "make one with `meterkit ota keygen --out FILE`")
    _check_rsa(key.public_key(), path)
    return key


def load_public(path):
    """A public key from a PEM file, or from a private key PEM (its public half)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read public key {path}: {e.strerror or e}",
                         hint="give the .pub.pem `meterkit ota keygen` wrote") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError):
            raise UsageError(f"{path} is not a PEM public key", hint="give the .pub.pem `meterkit ota keygen` wrote") from None
    _check_rsa(key, path)
    return key


def _check_rsa(pub, path):
    if not isinstance(pub, rsa.RSAPublicKey) or pub.key_size != KEY_BITS or pub.public_numbers().e != EXPONENT:
        raise UsageError(f"{path} is not an RSA-{KEY_BITS} key with e={EXPONENT} (the scheme meters verify)",
                         hint="make one with `meterkit ota keygen`")


def trust_entry_file(public_keys):
    """The meter's trust file: the keys whose signatures it accepts, as plain numbers."""
    return {"scheme": SCHEME, "keys": [{"id": key_id(k), "n": "%x" % k.public_numbers().n, "e": EXPONENT}
                                        for k in public_keys]}


def sign(private_key, data):
    return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def verify(public_key, signature, data):
    try:
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        return True
    except InvalidSignature:
        return False
