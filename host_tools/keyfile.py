"""Reading a private key file for the tools that sign (OTA packages, secure boot images): a clear
UsageError naming the file and how to make a good one, never the file's content."""
from cryptography.hazmat.primitives import serialization

from host_tools.errors import UsageError


def read_private_key(path, what, hint):
    """(PEM bytes, key object) of the unencrypted PEM private key at `path`; `what` names the key in
    errors ("signing key"), `hint` says how to make one."""
    try:
        pem = open(path, "rb").read()
    except OSError as e:
        raise UsageError(f"cannot read the {what} {path}: {e.strerror or e}", hint=hint) from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise UsageError(f"{path} is not an unencrypted PEM private key", hint=hint) from None
    return pem, key
