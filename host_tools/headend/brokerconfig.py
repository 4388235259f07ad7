"""`meterkit headend broker-config`: mosquitto as the production broker, configured from the head-end's
store. Writes into one folder:

- `ca.crt`, `ca.key`: the utility's CA (made once, kept on later runs: meters carry its certificate);
- `server.crt`, `server.key`: the broker's certificate, signed by that CA, for the given host names and
  IP addresses (remade when they change or it nears its end);
- `passwd`: one user per meter (user name = meter id, its provisioned broker password) and the head-end's
  own users, in mosquitto's PBKDF2-SHA512 hash format (`$7$`), so no password is stored in clear;
- `headend-users.json`: the head-end's users and their passwords (kept across runs; 0600): `headend`, and
  `headend-w<i>` for each worker of `serve --workers N`;
- `headend-workers.json` (with `--workers N`, 0600): the workers' logins and their secret shared-subscription
  group, for `serve --workers N --broker-logins` (see `worker_settings`);
- `acl`: the topic rules of `acl.py`;
- `mosquitto.conf`: an mqtts listener (TLS 1.2+, the server certificate), optionally a plain listener on
  loopback for the head-end on the same host, `allow_anonymous false`, `use_username_as_clientid true`,
  the password and ACL files, and persistence.

Every file is written to a temporary name and renamed, so a running mosquitto never reads half a file;
after re-running (new meters imported) send mosquitto SIGHUP to reload the password and ACL files.
Keys and secrets are 0600: in production give the folder to the mosquitto user (`chown -R mosquitto`)."""
import base64
import datetime
import hashlib
import ipaddress
import json
import os
import secrets
from pathlib import Path

from host_tools.errors import UsageError
from host_tools.headend import acl

PBKDF2_ITERATIONS = 101          # mosquitto_passwd's default for $7$ (PBKDF2-SHA512)
CA_DAYS = 20 * 365               # meters keep the CA certificate for their service life
SERVER_DAYS = 2 * 365
RENEW_DAYS = 30


def password_hash(password, salt=None, iterations=PBKDF2_ITERATIONS):
    """A mosquitto password-file hash: `$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>`."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    dk = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(), base64.b64encode(dk).decode())


def _write(path, data, mode=0o600):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# -- certificates -------------------------------------------------------------------------------------
def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _key():
    # RSA 2048: what every cellular modem's TLS stack (SIM7600, SIM800) takes
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key):
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(folder, name="Prepaid meter utility CA"):
    """The utility CA in folder (ca.crt, ca.key); an existing one is kept. Returns the ca.crt path."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    crt, key_path = folder / "ca.crt", folder / "ca.key"
    if crt.exists() and key_path.exists():
        return crt
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write(key_path, _pem_key(key))
    _write(crt, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return crt


def _sans(hostnames):
    from cryptography import x509
    out = []
    for h in hostnames:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def make_server_cert(folder, hostnames):
    """server.crt/server.key signed by the folder's CA for these names; remade when the names change or
    it is within RENEW_DAYS of its end. Returns the server.crt path."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    folder = Path(folder)
    crt, key_path = folder / "server.crt", folder / "server.key"
    want = _sans(hostnames)
    if crt.exists() and key_path.exists():
        old = x509.load_pem_x509_certificate(crt.read_bytes())
        try:
            have = list(old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            have = []
        if set(have) == set(want) and old.not_valid_after_utc - _now() > datetime.timedelta(days=RENEW_DAYS):
            return crt
    ca_cert = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
    key = _key()
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(want), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(key_path, _pem_key(key))
    _write(crt, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return crt


# -- users, ACL, config ---------------------------------------------------------------------------------
def headend_users(folder, workers=1):
    """{user: password} of the head-end's own users, kept across runs: `headend` (one `serve`, and the
    operator's URL), and for `serve --workers N` (N > 1) one login per worker, `headend-w0`..`headend-w<N-1>`
    (mosquitto binds the client id to the user name, so workers sharing one login would take over each
    other's session)."""
    path = Path(folder) / "headend-users.json"
    users = {}
    if path.exists():
        try:
            users = json.loads(path.read_text())
        except ValueError:
            raise UsageError(f"{path} is not JSON", hint="remove it to make new head-end passwords") from None
    names = [acl.HEADEND_USER] + ([acl.worker_user(i) for i in range(workers)] if workers > 1 else [])
    changed = False
    for n in names:
        if n not in users:
            users[n] = secrets.token_urlsafe(24)
            changed = True
    users = {n: users[n] for n in names}
    if changed or not path.exists():
        _write(path, json.dumps(users, indent=1, sort_keys=True) + "\n")
    return users


def worker_settings(folder, users):
    """`headend-workers.json` (0600) for `serve --workers N --broker-logins`: the workers' logins and the
    shared-subscription group they join, a secret kept across runs.

    Why a secret group: mosquitto's acl_file grants every SUBSCRIBE and checks access only when it delivers,
    so a meter's login that subscribed to `$share/<the workers' group>/meters/+/up` would join the group and
    be dealt its share of every meter's uplinks, which the ACL then drops: uplinks lost. A group name the
    meters cannot guess (128 random bits) leaves such a subscriber in a group of its own."""
    path = Path(folder) / "headend-workers.json"
    group = None
    if path.exists():
        try:
            group = json.loads(path.read_text()).get("group")
        except (ValueError, AttributeError):
            group = None
    if not isinstance(group, str) or not group.startswith("headend-"):
        group = "headend-" + secrets.token_hex(16)
    logins = {u: p for u, p in users.items() if u != acl.HEADEND_USER}
    _write(path, json.dumps({"group": group, "logins": logins}, indent=1, sort_keys=True) + "\n")
    return path


def build(store, folder, hostnames=("localhost", "127.0.0.1"), port=8883, plain_port=None, workers=1,
          persistence=True, bind="0.0.0.0", run_as=None, max_queued=100000):
    """Write the broker's files from the store's meters; returns a summary dict (paths, counts, URL)."""
    if not 1 <= port <= 65535 or (plain_port is not None and not 1 <= plain_port <= 65535):
        raise UsageError("a port is 1..65535", hint="e.g. --port 8883")
    if not 1 <= workers <= 64:
        raise UsageError(f"--workers {workers} is not 1..64", hint="one head-end user per worker")
    hostnames = list(dict.fromkeys(hostnames)) or ["localhost"]
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} is a file, not a folder", hint="give a folder for the broker's files "
                         "(mosquitto.conf, passwords, ACLs, certificates)")
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700 if run_as is None else 0o755)
    make_ca(folder)
    make_server_cert(folder, hostnames)
    he = headend_users(folder, workers)
    lines, skipped = [], []
    for r in store.q("SELECT meter_id, broker_password FROM meters ORDER BY meter_id"):
        mid, pw = r["meter_id"], r["broker_password"]
        if acl.is_headend_user(mid) or ":" in mid or not pw or not acl.allowed(mid, f"meters/{mid}/up", acl.PUBLISH):
            skipped.append(mid)           # imported before ids were checked: never given a login
            continue
        lines.append(f"{mid}:{password_hash(pw)}")
    lines += [f"{u}:{password_hash(p)}" for u, p in he.items()]
    _write(folder / "passwd", "\n".join(lines) + "\n")
    _write(folder / "acl", acl.mosquitto_acl(list(he)))
    conf = [
        "# written by `meterkit headend broker-config` from the head-end's store; re-run after importing",
        "# meters, then SIGHUP mosquitto to reload passwd and acl",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {folder / 'passwd'}",
        f"acl_file {folder / 'acl'}",
        # per client: a meter's downlinks are few; a head-end worker's queue takes the fleet's burst at the
        # quarter hour while it is busy (past this mosquitto drops uplinks)
        f"max_queued_messages {int(max_queued)}",
        "max_inflight_messages 100",
    ]
    if run_as:
        conf.append(f"user {run_as}")
    if persistence:
        conf += ["persistence true", f"persistence_location {folder}/"]
    else:
        conf.append("persistence false")
    # use_username_as_clientid is a listener setting in mosquitto 2.0 (before any listener line it would
    # open the default listener on 1883 and apply there only): given on each listener
    conf += ["", f"listener {port} {bind}", "use_username_as_clientid true", f"cafile {folder / 'ca.crt'}",
             f"certfile {folder / 'server.crt'}", f"keyfile {folder / 'server.key'}", "tls_version tlsv1.2"]
    if plain_port is not None:
        conf += ["", "# the head-end on this host: loopback only, same users and ACLs", f"listener {plain_port} 127.0.0.1",
                 "use_username_as_clientid true"]
    _write(folder / "mosquitto.conf", "\n".join(conf) + "\n", 0o644)
    host = hostnames[0]
    url = f"mqtts://{acl.HEADEND_USER}:{he[acl.HEADEND_USER]}@{host}:{port}"
    _write(folder / "headend.url", url + "\n")
    workers_file = worker_settings(folder, he) if workers > 1 else None
    return {"folder": str(folder), "conf": str(folder / "mosquitto.conf"), "ca": str(folder / "ca.crt"),
            "meters": len(lines) - len(he), "skipped": skipped, "headend_users": list(he), "port": port,
            "plain_port": plain_port, "hostnames": hostnames, "url_file": str(folder / "headend.url"),
            "logins_file": str(workers_file) if workers_file else None}
