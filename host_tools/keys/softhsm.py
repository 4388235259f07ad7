"""A SoftHSM2 token of its own in a folder, for tests, demos and benchmarks: a softhsm2.conf whose token
directory is inside the folder, a token made and a vending key imported through `meterkit keys` itself
(in a child process, so this process's PKCS#11 library keeps its own configuration), and the
environment that points the tools at it."""
import os
import secrets
import subprocess
import sys

from host_tools.errors import UsageError
from host_tools.keys import settings as _settings

CONF = "softhsm2.conf"


def write_conf(directory):
    """softhsm2.conf with its tokens under `directory`; returns the conf's path."""
    tokens = os.path.join(directory, "tokens")
    os.makedirs(tokens, mode=0o700, exist_ok=True)
    path = os.path.join(directory, CONF)
    with open(path, "w") as f:
        f.write("# SoftHSM2 for meterkit: tokens stay in this folder\n"
                "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                "slots.removable = false\n" % tokens)
    return path


def make_token(directory, vending_key_hex, label="meterkit", key_label=_settings.DEFAULT_KEY):
    """A new token in `directory` holding `vending_key_hex` (imported once); returns the environment
    (SOFTHSM2_CONF, token, key label and random PINs) that selects it."""
    if _settings.find_softhsm() is None and not os.environ.get(_settings.ENV_MODULE):
        raise UsageError("SoftHSM2 is not installed", hint="apt-get install -y softhsm2")
    env = {"SOFTHSM2_CONF": write_conf(directory), _settings.ENV_TOKEN: label, _settings.ENV_KEY: key_label,
           _settings.ENV_PIN: secrets.token_hex(8)}
    child = dict(os.environ, **env)
    child.pop(_settings.ENV_SLOT, None)
    child[_settings.ENV_SO_PIN] = secrets.token_hex(8)
    cli = [sys.executable, "-m", "host_tools.keys"]
    for argv, stdin in ((["init"], None), (["import"], vending_key_hex + "\n")):
        p = subprocess.run(cli + argv, input=stdin or "", env=child, capture_output=True, text=True)
        if p.returncode != 0:
            raise UsageError("could not make a SoftHSM token in %s: %s" % (directory, p.stderr.strip()),
                             hint="check softhsm2 is installed")
    return env


def ensure_vending_module(directory, vending_key_hex=None):
    """For demos and benchmarks: when no module is set up for unattended use ($METERKIT_HSM_PIN unset),
    make a throwaway SoftHSM token in `directory` with a demo vending key (random unless given) and point
    this process and its children at it. Returns the environment it set ({} when one was set up)."""
    conf = os.environ.get("SOFTHSM2_CONF")
    if os.environ.get(_settings.ENV_PIN) and (not conf or os.path.exists(conf)):
        return {}
    env = make_token(os.path.join(directory, "softhsm"), vending_key_hex or secrets.token_hex(20))
    from host_tools.keys import vendingkey
    vendingkey.close_all()        # sessions on an earlier throwaway token go: the module re-reads its conf
    os.environ.update(env)
    return env
