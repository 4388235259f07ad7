"""`meterkit ota keygen|pack|inspect`: a package signed with the manufacturer's key passes the meter's
checks; one signed by another key, changed after signing, for another board, below the anti-rollback
version, over too old a version, or too big for the slot is refused, each with its own result code."""
import hashlib
import json
import struct

import pytest
from cli_support import mk

from host_tools.flash import imagegen
from host_tools.ota import keys, package


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    d = tmp_path_factory.mktemp("ota")
    r = mk("ota", "keygen", "--out", str(d / "k.pem"), "--json")
    assert r.returncode == 0, r.stderr
    mk("ota", "keygen", "--out", str(d / "other.pem"))
    (d / "fw.bin").write_bytes(imagegen.combined(app_size=96 * 1024, table="ota"))
    r = mk("ota", "pack", "--firmware", str(d / "fw.bin"), "--version", "0.2.0", "--min-version", "0.1.0",
           "--key", str(d / "k.pem"), "--out", str(d / "p.ota"), "--json")
    assert r.returncode == 0, r.stderr
    return d


def inspect(kit, *extra, pkg="p.ota", trust="k.pub.pem"):
    r = mk("ota", "inspect", str(kit / pkg), "--trust", str(kit / trust), "--json", *extra)
    return r.returncode, json.loads(r.stdout)


def test_keygen_writes_private_public_and_trust_file_and_keeps_an_existing_key(kit):
    trust = json.loads((kit / "k.trust.json").read_text())
    pub = keys.load_public(kit / "k.pub.pem")
    assert trust["keys"][0]["id"] == keys.key_id(pub)
    assert int(trust["keys"][0]["n"], 16) == pub.public_numbers().n and trust["keys"][0]["e"] == 65537
    assert (kit / "k.pem").stat().st_mode & 0o077 == 0, "the private key is readable by others"
    before = (kit / "k.pem").read_bytes()
    r = mk("ota", "keygen", "--out", str(kit / "k.pem"))
    assert r.returncode == 2 and "already exists" in r.stderr
    assert (kit / "k.pem").read_bytes() == before


def test_packed_image_is_the_app_with_its_hash_and_passes_every_check(kit):
    pkg = package.read(kit / "p.ota")
    app = (kit / "fw.bin").read_bytes()[0x10000 - 0x1000:]
    assert pkg.image == app[:len(pkg.image)] and len(pkg.image) == pkg.header["size"]
    assert pkg.header["sha256"] == hashlib.sha256(pkg.image).hexdigest()
    assert pkg.header["slot_size"] == 0x180000 and pkg.header["board"] == "esp32_atm90e26"
    rc, out = inspect(kit, "--board", "esp32_atm90e26", "--running", "0.1.0", "--anti-rollback", "0.2.0")
    assert rc == 0 and out["result"] == "accepted" and out["signature"] == "valid", out


@pytest.mark.parametrize("extra,trust,code", [
    ((), "other.pub.pem", "bad_signature"),
    (("--board", "sim"), "k.pub.pem", "wrong_board"),
    (("--anti-rollback", "0.3.0"), "k.pub.pem", "downgrade"),
    (("--running", "0.0.9"), "k.pub.pem", "too_old"),
    (("--running", "0.2.0"), "k.pub.pem", "already_installed"),    # what the meter answers (firmware/ota/offer.py)
])
def test_refusals_have_their_own_result_code(kit, extra, trust, code):
    rc, out = inspect(kit, *extra, trust=trust)
    assert rc == 2 and out["result"] == code, out


def test_a_header_changed_after_signing_is_refused_as_bad_signature(kit):
    blob = bytearray((kit / "p.ota").read_bytes())
    i = blob.find(b'"version":"0.2.0"')
    assert i > 0
    blob[i:i + 17] = b'"version":"9.2.0"'
    (kit / "forged.ota").write_bytes(bytes(blob))
    rc, out = inspect(kit, pkg="forged.ota")
    assert rc == 2 and out["result"] == "bad_signature", out


def test_a_corrupted_or_truncated_image_is_refused_as_hash_mismatch(kit):
    blob = bytearray((kit / "p.ota").read_bytes())
    blob[-5000] ^= 1
    (kit / "bad.ota").write_bytes(bytes(blob))
    (kit / "short.ota").write_bytes((kit / "p.ota").read_bytes()[:-100])
    for name in ("bad.ota", "short.ota"):
        rc, out = inspect(kit, pkg=name)
        assert rc == 2 and out["result"] == "hash_mismatch", (name, out)


def test_an_image_bigger_than_the_slot_is_refused_by_pack_and_by_inspect(kit):
    key = keys.load_private(kit / "k.pem")
    with pytest.raises(package.Refused) as e:
        package.build(b"\xe9" * (0x180000 + 1), "esp32_atm90e26", "0.3.0", key)
    assert e.value.code == "too_big"
    # a header claiming a bigger slot than the board's: the meter's own slot size decides
    blob = package.build(package.app_image_from((kit / "fw.bin").read_bytes()), "esp32_atm90e26", "0.3.0", key,
                         slot=0x400000)
    pkg = package.parse(blob)
    with pytest.raises(package.Refused) as e:
        package.check(pkg, [key.public_key()], board="esp32_atm90e26", slot=len(pkg.image) - 1)
    assert e.value.code == "too_big"


def test_bad_input_is_one_line_and_nothing_is_written(kit):
    (kit / "junk.bin").write_bytes(b"\x00" * 4096)
    r = mk("ota", "pack", "--firmware", str(kit / "junk.bin"), "--version", "0.2.0", "--key", str(kit / "k.pem"),
           "--out", str(kit / "junk.ota"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (kit / "junk.ota").exists()
    r = mk("ota", "pack", "--firmware", str(kit / "fw.bin"), "--version", "two", "--key", str(kit / "k.pem"),
           "--out", str(kit / "v.ota"))
    assert r.returncode == 2 and "MAJOR.MINOR.PATCH" in r.stderr and not (kit / "v.ota").exists()
    (kit / "notpkg.ota").write_bytes(b"hello")
    rc, out = inspect(kit, pkg="notpkg.ota")
    assert rc == 2 and out["result"] == "bad_package", out
    r = mk("ota", "inspect", str(kit / "p.ota"))
    assert r.returncode == 2 and "--trust" in r.stderr


def test_offer_is_the_signed_head_and_fits_one_mqtt_message(kit):
    pkg = package.read(kit / "p.ota")
    off = pkg.offer
    assert off[:8] == package.MAGIC and len(off) < 2048
    (hl,) = struct.unpack_from("<I", off, 8)
    assert off[12:12 + hl] == pkg.header_bytes


def test_the_result_code_table_in_the_docs_lists_every_code_of_the_tool_and_the_meter():
    import re
    from pathlib import Path

    from host_tools.ota import codes
    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "ota.md").read_text()
    table = doc[doc.index("### Result codes"):doc.index("## On the meter")]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    tool = {v for k, v in vars(codes).items() if k.isupper() and isinstance(v, str)}
    meter = set()
    for name in ("offer.py", "updater.py"):
        src = (root / "firmware" / "ota" / name).read_text()
        meter |= set(re.findall(r'^[A-Z_]+ = "([a-z_]+)"$', src, re.M))
        meter |= set(re.findall(r'return "([a-z_]+)"', src))
        meter |= set(re.findall(r'"code": "([a-z_]+)"', src))
    meter -= {"idle", "dl", "ready", "switched", "ok", "done", "other_image", "reset", "valid", "trial",
              "rolled_back", "ota"}          # states and job answers, not result codes
    assert tool == documented, (tool ^ documented)
    assert meter <= documented, meter - documented
