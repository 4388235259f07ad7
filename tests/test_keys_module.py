"""`meterkit keys init|import|list` on a SoftHSM2 token of each test's own (its SOFTHSM2_CONF in a
temporary folder), and the vending key's protection in the session's token: sensitive, never read back,
its attributes locked, DKGA04 computed inside the module. PINs come from the environment or a prompt on
the terminal, never from the command line; every refusal is one line and a non-zero exit."""
import fcntl
import json
import os
import select
import subprocess
import sys
import termios
import time

import pytest

from host_tools.keys import softhsm

VECTOR_KEY = "abababababababab949494949494949401234567"      # docs/tokens.md's DKGA04 vector
VECTOR_PAN = "600727000000000009"
VECTOR_DECODER_KEY = "f94b6ed353c3bfdb113e2d3a7ea3c41d"
OTHER_KEY = "0123456789abcdef0123456789abcdef01234567"
HSM_VARS = ("SOFTHSM2_CONF", "METERKIT_HSM_TOKEN", "METERKIT_HSM_KEY", "METERKIT_HSM_PIN", "METERKIT_HSM_SO_PIN",
            "METERKIT_HSM_SLOT", "METERKIT_PKCS11_MODULE")


@pytest.fixture
def fresh(tmp_path):
    """An environment whose SoftHSM has no token yet (its own conf and token folder)."""
    env = {k: v for k, v in os.environ.items() if k not in HSM_VARS}
    env.update(SOFTHSM2_CONF=softhsm.write_conf(str(tmp_path / "hsm")), METERKIT_HSM_TOKEN="line-1",
               METERKIT_HSM_PIN="user-pin-1", METERKIT_HSM_SO_PIN="so-pin-99")
    return env


def keys(env, *argv, stdin=""):
    return subprocess.run([sys.executable, "-m", "host_tools.cli", "keys", *argv], env=env, input=stdin,
                          capture_output=True, text=True, timeout=120, start_new_session=True)


def _ok(r):
    assert r.returncode == 0, "exit %d: %s" % (r.returncode, r.stderr)
    return json.loads(r.stdout) if r.stdout.startswith("{") else r.stdout


def test_init_import_list_keeps_the_key_sensitive_and_shows_its_check_value(fresh):
    from host_tools.keys.vendingkey import software_check_value
    made = _ok(keys(fresh, "init", "--json"))
    assert made["token"] == "line-1" and made["module"].endswith("libsofthsm2.so"), made
    imp = _ok(keys(fresh, "import", "--json", stdin=VECTOR_KEY + "\n"))
    assert imp["label"] == "vending" and imp["check_value"] == software_check_value(bytes.fromhex(VECTOR_KEY)), imp
    listed = _ok(keys(fresh, "list", "--json"))
    assert listed["token"] == "line-1" and [t["label"] for t in listed["tokens"] if t["initialized"]] == ["line-1"]
    (k,) = listed["keys"]
    assert (k["label"], k["sensitive"], k["extractable"], k["sign"]) == ("vending", True, False, True), k
    assert k["check_value"] == imp["check_value"], (k, imp)
    human = _ok(keys(fresh, "list"))
    assert "line-1" in human and "sensitive, not extractable, sign" in human and imp["check_value"] in human, human
    assert VECTOR_KEY not in human and VECTOR_KEY not in json.dumps(listed)


def test_the_module_derives_the_dkga04_vector_for_vend_sts(fresh):
    _ok(keys(fresh, "init"))
    _ok(keys(fresh, "import", stdin=VECTOR_KEY))
    r = subprocess.run([sys.executable, "-m", "host_tools.cli", "vend", "sts", "--sgc", "123457", "--ti", "1",
                        "--krn", "1", "--kt", "2", "--base-date", "93", "--pan", VECTOR_PAN, "--kwh", "0.1",
                        "--tid", "5871660", "--rnd", "5", "--json"],
                       env=dict(fresh, METERKIT_DATA=os.path.dirname(fresh["SOFTHSM2_CONF"])),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["token"] == "59386323472137426967", r.stderr


def test_a_key_is_imported_once_and_a_second_token_label_is_refused(fresh):
    _ok(keys(fresh, "init"))
    _ok(keys(fresh, "import", stdin=VECTOR_KEY))
    for argv, needle in ((["import"], "already holds a key labelled 'vending'"),
                         (["import", "--label", "again"], "this vending key is already in token 'line-1'")):
        r = keys(fresh, *argv, stdin=VECTOR_KEY)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, (argv, r.stderr)
    _ok(keys(fresh, "import", "--label", "vending-krn2", stdin=OTHER_KEY))     # a new key, a new label
    labels = sorted(k["label"] for k in _ok(keys(fresh, "list", "--json"))["keys"])
    assert labels == ["vending", "vending-krn2"], labels
    r = keys(fresh, "init")
    assert r.returncode == 2 and "already exists" in r.stderr, r.stderr


@pytest.mark.parametrize("stdin, needle", [("abcd\n", "40 hex digits"), ("", "no vending key on stdin"),
                                           ("zz" * 20, "40 hex digits")])
def test_a_bad_key_on_stdin_is_refused_before_the_module_is_touched(fresh, stdin, needle):
    _ok(keys(fresh, "init"))
    r = keys(fresh, "import", stdin=stdin)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert _ok(keys(fresh, "list", "--json"))["keys"] == []


def test_pins_come_from_the_environment_or_a_terminal_never_argv(fresh):
    _ok(keys(fresh, "init"))
    no_pin = {k: v for k, v in fresh.items() if k != "METERKIT_HSM_PIN"}
    r = keys(no_pin, "list")                        # no terminal (a new session), no variable
    assert r.returncode == 2 and "no user PIN" in r.stderr and "METERKIT_HSM_PIN" in r.stderr, r.stderr
    r = keys(dict(fresh, METERKIT_HSM_PIN="wrong-pin"), "list")
    assert r.returncode == 2 and "wrong PIN" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = keys(fresh, "import", "--pin", "user-pin-1", stdin=VECTOR_KEY)
    assert r.returncode == 2 and "unrecognized arguments: --pin" in r.stderr, r.stderr
    r = keys({k: v for k, v in fresh.items() if k != "METERKIT_HSM_SO_PIN"}, "init", "--token", "line-2")
    assert r.returncode == 2 and "no security officer PIN" in r.stderr, r.stderr


def _on_a_terminal(env, argv, answers):
    """Run meterkit with a pty as its controlling terminal; answer each prompt; (exit code, output)."""
    master, slave = os.openpty()

    def as_terminal():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    p = subprocess.Popen([sys.executable, "-m", "host_tools.cli", *argv], env=env, stdin=slave, stdout=slave,
                         stderr=slave, preexec_fn=as_terminal, close_fds=True)
    os.close(slave)
    out, end, mark = b"", time.monotonic() + 60, 0
    pending = list(answers)
    try:
        while time.monotonic() < end:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
                new = out[mark:].strip()
                if pending and new.endswith(b":") and len(new) > 1:    # a new prompt since the last answer
                    os.write(master, pending.pop(0).encode() + b"\n")
                    mark = len(out)
            elif p.poll() is not None:
                break
        try:
            return p.wait(30), out.decode(errors="replace")
        except subprocess.TimeoutExpired:
            raise AssertionError("meterkit %s did not exit; its terminal showed %r" % (argv, out)) from None
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


def test_the_pins_and_the_key_can_be_typed_at_hidden_prompts(fresh):
    quiet = {k: v for k, v in fresh.items() if k not in ("METERKIT_HSM_PIN", "METERKIT_HSM_SO_PIN")}
    rc, out = _on_a_terminal(quiet, ["keys", "init"], ["so-pin-99", "so-pin-99", "user-pin-1", "user-pin-1"])
    assert rc == 0 and "security officer PIN" in out and "token 'line-1' made" in out, out
    rc, out = _on_a_terminal(quiet, ["keys", "import"], [VECTOR_KEY, "user-pin-1"])
    assert rc == 0 and "vending key (40 hex digits, not shown)" in out and "imported" in out, out
    assert VECTOR_KEY not in out and "user-pin-1" not in out          # nothing typed is echoed
    listed = _ok(keys(fresh, "list", "--json"))
    assert [k["label"] for k in listed["keys"]] == ["vending"], listed


def test_the_module_path_slot_and_label_are_overridable(fresh):
    _ok(keys(fresh, "init"))
    _ok(keys(fresh, "import", stdin=VECTOR_KEY))
    slot = _ok(keys(fresh, "list", "--json"))["slot"]
    by_slot = {k: v for k, v in fresh.items() if k != "METERKIT_HSM_TOKEN"}
    got = _ok(keys(dict(by_slot, METERKIT_HSM_SLOT=str(slot),
                        METERKIT_PKCS11_MODULE="/usr/lib/softhsm/libsofthsm2.so"), "list", "--json"))
    assert got["token"] == "line-1" and got["slot"] == slot, got
    r = keys(fresh, "list", "--pkcs11-module", "/nonexistent/libvendor-pkcs11.so")
    assert r.returncode == 2 and "does not exist" in r.stderr, r.stderr
    r = keys(fresh, "list", "--token", "line-9")
    assert r.returncode == 1 and "no token labelled 'line-9'" in r.stdout, (r.stdout, r.stderr)
    r = keys(fresh, "list", "--slot", "424242")
    assert r.returncode == 1 and "no token in slot 424242" in r.stdout, (r.stdout, r.stderr)


def test_the_vending_key_never_leaves_the_session_token():
    """The key the tests vend with: its value is not readable, and it cannot be made readable."""
    import PyKCS11
    from PyKCS11.constants import CKA_EXTRACTABLE, CKA_SENSITIVE, CKA_VALUE

    from host_tools.keys.vendingkey import open_vending_key
    from host_tools.keys.module import Module
    vk = open_vending_key()
    assert vk.session.read_value(vk.handle) is None
    assert vk.session.raw.getAttributeValue(vk.handle, [CKA_VALUE], allAsBinary=True) == [None]
    with Module(vk.settings) as mod:                 # a read-write session: only the key's own attributes stop it
        rw = mod.open(mod.slot(), os.environ["METERKIT_HSM_PIN"], rw=True)
        try:
            h = rw.find_secret(vk.settings.key)
            for attr, value in ((CKA_SENSITIVE, False), (CKA_EXTRACTABLE, True)):
                with pytest.raises(PyKCS11.PyKCS11Error) as e:
                    rw.raw.setAttributeValue(h, [(attr, value)])
                assert "ACTION_PROHIBITED" in str(e.value) or "READ_ONLY" in str(e.value), e.value
            assert rw.raw.getAttributeValue(h, [CKA_SENSITIVE, CKA_EXTRACTABLE]) == [True, False]
            assert rw.read_value(h) is None
        finally:
            rw.close()
    assert vk.decoder_key("123457", 1, 1, 2, VECTOR_PAN, "93").hex() == VECTOR_DECODER_KEY


def test_no_verb_takes_a_vending_key_from_argv_or_a_plain_file(tmp_path):
    """Every option that once carried a vending key, and every keystore that holds one, is refused."""
    plain = tmp_path / "keystore.json"
    plain.write_text(json.dumps({"vending_key_hex": VECTOR_KEY, "iin": "600727", "kt": 2,
                                 "broker": {"host": "127.0.0.1", "port": 1883}}))
    db = tmp_path / "he.db"
    from host_tools.headend.store import Store
    Store(str(db)).close()
    for argv in (["vend", "sts", "--vending-key", VECTOR_KEY, "--sgc", "123457", "--ti", "1", "--krn", "1", "--kt",
                  "2", "--pan", VECTOR_PAN, "--kwh", "1"],
                 ["headend", "topup", VECTOR_PAN, "--kwh", "1", "--keystore", str(plain), "--db", str(db)],
                 ["provision", "--port", "/dev/null", "--keystore", str(plain), "--sgc", "123457", "--ti", "1",
                  "--db", str(tmp_path / "rec.sqlite")]):
        r = subprocess.run([sys.executable, "-m", "host_tools.cli", *argv], capture_output=True, text=True,
                           timeout=120, env=dict(os.environ, METERKIT_DATA=str(tmp_path)))
        assert r.returncode == 2 and "meterkit keys import" in r.stderr and "Traceback" not in r.stderr, \
            (argv[:2], r.returncode, r.stderr)
    assert not (tmp_path / "rec.sqlite").exists()


def test_headend_topup_needs_no_keystore_file_the_module_holds_the_key(tmp_path):
    from tokens import dkga04 as fw_dkga04       # the firmware's software DKGA04: the reference

    from host_tools.headend.demo import make_fleet
    from host_tools.vend import sts_encode
    csv_path, _, rows = make_fleet(str(tmp_path / "fleet"), 1)
    db = str(tmp_path / "he.db")
    run = [sys.executable, "-m", "host_tools.cli", "headend"]
    assert subprocess.run(run + ["import", csv_path, "--db", db], capture_output=True).returncode == 0
    r = subprocess.run(run + ["topup", rows[0]["meter_id"], "--amount", "5", "--db", db, "--json"],
                       capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if k != "METERKIT_KEYSTORE"})
    assert r.returncode == 0, r.stderr
    token = json.loads(r.stdout)["token"]
    key = fw_dkga04.decoder_key(bytes.fromhex(VECTOR_KEY), rows[0]["sgc"], rows[0]["ti"], rows[0]["krn"], 2,
                                rows[0]["pan"], "14")
    got = sts_encode.inspect(key, token, "14")
    assert got["crc_ok"] and got["subclass"] == 4, got


def test_a_second_throwaway_token_replaces_one_whose_folder_is_gone(tmp_path):
    """Demos and benchmarks: a module made for one run, removed, then another in the same process."""
    script = """
import os, shutil, sys
from host_tools.keys import softhsm, vendingkey
for i, key in enumerate(("ab" * 20, "cd" * 20)):
    d = os.path.join(sys.argv[1], "run%d" % i)
    softhsm.ensure_vending_module(d, key)
    print(vendingkey.open_vending_key().check_value(), vendingkey.software_check_value(bytes.fromhex(key)))
    shutil.rmtree(d)
"""
    env = {k: v for k, v in os.environ.items() if k not in HSM_VARS}
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [ln.split() for ln in r.stdout.splitlines()]
    assert len(lines) == 2 and all(a == b for a, b in lines) and lines[0][0] != lines[1][0], r.stdout
