"""Certificates: what a passed and a failed meter's files hold, escaping, the manufacturing-record hook,
and a report folder that cannot be written. Results come from the chip-direct meter (fast)."""
import json

import pytest

from host_tools.calibrate import certificate as C
from host_tools.calibrate.bench.sim import SimBench
from host_tools.calibrate.lab import run_lab
from host_tools.errors import UsageError
from test_calibrate_fixtures import ChipDirectMeter


def _result(afe="typical", seed=8, cls="1"):
    m = ChipDirectMeter(seed=seed, afe=afe)
    return run_lab(m, SimBench(m, seed=seed), cls, write_report=False, meter_name="M<8>")


def test_passed_certificate_has_every_file_and_the_meter_name_escaped(tmp_path):
    res = _result()
    paths = C.write_certificate(res, tmp_path)
    assert sorted(k for k in paths) == ["csv", "html", "json", "png", "sig"]
    page = open(paths["html"]).read()
    assert "M&lt;8&gt;" in page and "M<8>" not in page
    assert "PASSED" in page and "new calibration, stored" in page
    assert json.load(open(paths["json"]))["points"][0]["label"] == "5% Ib PF 1"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cert-")]     # nothing left aside


def test_failed_certificate_says_why_and_has_no_curve(tmp_path):
    res = _result(afe="uncorrectable")
    paths = C.write_certificate(res, tmp_path)
    assert "png" not in paths
    page = open(paths["html"]).read()
    assert "FAILED" in page and "bit 15" in page and "unchanged: nothing stored" in page
    assert open(paths["csv"]).read().count("\n") == 1            # the header only: no point was tested


def test_certificate_goes_next_to_an_existing_manufacturing_record(tmp_path, monkeypatch):
    res = _result()
    paths = C.write_certificate(res, tmp_path / "cert")
    assert C.attach_to_record("M<8>", paths, records_root=tmp_path / "records") == []   # no record: nothing
    (tmp_path / "records" / C.safe_name("M<8>")).mkdir(parents=True)
    seen = []
    monkeypatch.setattr(C, "RECORD_HOOKS", [lambda meter, p: seen.append(meter) or ["db:" + meter]])
    stored = C.attach_to_record("M<8>", paths, records_root=tmp_path / "records")
    assert seen == ["M<8>"] and stored[0] == "db:M<8>"
    assert sorted(p.rsplit("/", 1)[-1] for p in stored[1:]) == sorted(list(C.FILES.values()) + ["certificate.sig"])


def test_unwritable_report_folder_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="report folder"):
        C.write_certificate(_result(), blocker / "sub")


def test_certificate_is_kept_with_the_manufacturing_record(tmp_path):
    from host_tools.provision.records import RecordDB
    db_path = tmp_path / "records.sqlite"
    db = RecordDB(db_path)
    db.save({"serial": 7, "pan": "600727000000000074", "meter_id": "600727000000000074", "board": "sim",
             "message_key_hex": "00" * 32, "service_key_hex": "11" * 32, "broker_password": "pw-12345678",
             "selftest": []})
    db.close()
    files = {}
    for name in ("certificate.html", "certificate.json"):
        p = tmp_path / name
        p.write_text("<cert %s>" % name)
        files[name.split(".")[1]] = str(p)
    hook = C.record_db_hook(db_path)
    stored = hook("600727000000000074", files)
    assert len(stored) == 2 and all(open(s).read().startswith("<cert") for s in stored)
    db = RecordDB(db_path)
    certs = db.certificates("600727000000000074")
    assert len(certs) == 1 and certs[0]["serial"] == 7
    assert hook("no-such-meter", files) == []          # a meter without a record gets nothing stored
    db.close()
