"""The lab's signature on a certificate: a detached Ed25519 signature (the `cryptography` library) over
a manifest of the certificate's files (their SHA-256) and its number, kept in `certificate.sig`.
`verify_folder` recomputes every file's hash and checks the signature with the lab's PUBLIC key, so
a changed figure, a swapped plot or a re-numbered certificate is refused.

The lab's private key is a PEM file (`lab-signing-key.pem` in $METERKIT_DATA or the working folder,
made on first use, mode 0600); its public half (`lab-signing-key.pub.pem`) is what the lab publishes
for anyone checking its certificates."""
import base64
import hashlib
import json
import os

from host_tools.errors import UsageError
from host_tools.paths import data_dir

SIG_FILE = "certificate.sig"
KEY_NAME = "lab-signing-key.pem"


class VerifyError(UsageError):
    """A certificate that does not verify."""
    exit_code = 1


def default_key_path():
    return str(data_dir() / KEY_NAME)


def public_path(key_path):
    root, ext = os.path.splitext(key_path)
    return root + ".pub" + (ext or ".pem")


def load_or_make_key(path=None):
    """(private key, public PEM bytes, made) from `path`; made on first use."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    path = path or default_key_path()
    made = False
    if not os.path.exists(path):
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        with open(public_path(path), "wb") as f:
            f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
        made = True
    try:
        key = serialization.load_pem_private_key(open(path, "rb").read(), password=None)
    except (ValueError, TypeError, OSError) as e:
        raise UsageError(f"cannot read the lab's signing key {path}: {e}",
                         hint="give --lab-key FILE with an unencrypted Ed25519 PEM key") from None
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, pub, made


def fingerprint(public_pem):
    """SHA-256 of the raw public key, first 16 hex digits in groups: how people compare keys."""
    from cryptography.hazmat.primitives import serialization
    k = serialization.load_pem_public_key(public_pem)
    raw = k.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    h = hashlib.sha256(raw).hexdigest()[:16]
    return ":".join(h[i:i + 4] for i in range(0, 16, 4))


def _manifest(folder, names, number):
    files = {}
    for n in sorted(names):
        with open(os.path.join(folder, n), "rb") as f:
            files[n] = hashlib.sha256(f.read()).hexdigest()
    return {"certificate": number, "files": files}


def _canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sign_folder(folder, names, number, key):
    """Write certificate.sig for the files `names` in `folder`; returns its path."""
    from cryptography.hazmat.primitives import serialization
    man = _manifest(folder, names, number)
    sig = key.sign(_canonical(man))
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    doc = dict(man, algorithm="Ed25519", signature=base64.b64encode(sig).decode(),
               key_fingerprint=fingerprint(pub))
    path = os.path.join(folder, SIG_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path


def verify_folder(folder, public_pem):
    """Check a certificate folder against the lab's public key; returns the manifest, or raises
    VerifyError saying what does not match."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    path = os.path.join(folder, SIG_FILE)
    try:
        doc = json.load(open(path))
    except OSError:
        raise VerifyError(f"no signature {path}", hint="a signed certificate folder holds certificate.sig") from None
    except ValueError:
        raise VerifyError(f"{path} is not a signature file") from None
    try:
        pub = serialization.load_pem_public_key(public_pem)
    except ValueError as e:
        raise UsageError(f"the public key is not a PEM public key: {e}") from None
    files = doc.get("files") or {}
    for name, want in sorted(files.items()):
        p = os.path.join(folder, name)
        if os.path.basename(name) != name or not os.path.exists(p):
            raise VerifyError(f"{name} is missing from {folder}", hint="the certificate is incomplete")
        got = hashlib.sha256(open(p, "rb").read()).hexdigest()
        if got != want:
            raise VerifyError(f"{name} was changed after signing (SHA-256 {got[:16]}..., signed {want[:16]}...)",
                              hint="this is not the certificate the lab issued")
    man = {"certificate": doc.get("certificate"), "files": files}
    try:
        pub.verify(base64.b64decode(doc.get("signature", "")), _canonical(man))
    except (InvalidSignature, ValueError):
        raise VerifyError("the signature does not match: not signed by this lab's key, or the signature file "
                          "was altered", hint="check you have the issuing lab's public key") from None
    return dict(man, key_fingerprint=fingerprint(public_pem))
