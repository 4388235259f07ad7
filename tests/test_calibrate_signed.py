"""A lab's certificate: unique number, operator, ambient conditions, reference standard, due date,
traceability, an uncertainty budget per point, the plot titled with meter and date on a % of Ib axis,
and a detached Ed25519 signature that `meterkit calibrate verify` accepts, and refuses once any file,
the number or the signature is changed, or with another lab's key."""
import json
import os
import shutil

import pytest

import host_tools.cli as cli
from host_tools.calibrate import certificate as C
from host_tools.calibrate import signing
from host_tools.calibrate.bench.sim import SimBench
from host_tools.calibrate.lab import run_lab
from test_calibrate_fixtures import ChipDirectMeter


@pytest.fixture(scope="module")
def result():
    m = ChipDirectMeter(seed=8, afe="typical")
    return run_lab(m, SimBench(m, seed=8), "1", write_report=False)


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("METERKIT_DATA", str(tmp_path))
    monkeypatch.setattr(cli, "COMMANDS", ["host_tools.calibrate.cli"])
    return tmp_path


def _write(result, folder, **lab):
    res = json.loads(json.dumps(result))       # each certificate from its own copy
    return res, C.write_certificate(res, folder, lab=lab)


def test_certificate_carries_what_a_lab_signs(result, data):
    res, paths = _write(result, data / "c1", operator="A. Diallo", temperature_c=22.5, humidity_pct=41,
                        reference="Zera COM3003 s/n 12345", due_months=24)
    lab = res["lab"]
    assert lab["certificate_number"].startswith("CAL-") and lab["operator"] == "A. Diallo"
    assert lab["ambient"] == {"temperature_c": 22.5, "humidity_pct": 41, "source": "entered by the operator"}
    assert lab["reference_standard"]["name"] == "Zera COM3003 s/n 12345"
    assert lab["due_date"][:4] == str(int(lab["issued"][:4]) + 2)
    assert "not traceable" in lab["traceability"]            # a simulated reference says so
    page = open(paths["html"]).read()
    for text in (lab["certificate_number"], "A. Diallo", "22.5 &deg;C", "41 % RH", "Zera COM3003", "Traceability",
                 "Uncertainty budget", "Repeatability", lab["signing_key_fingerprint"]):
        assert text in page, text
    assert "unidentified" not in res["meter"] and res["meter"] == "unprovisioned sim meter"


def test_every_point_has_an_uncertainty_budget(result):
    for p in result["points"]:
        u = p["uncertainty"]
        assert set(u["components"]) == {"reference class", "source stability", "resolution", "repeatability"}
        assert u["repeats"] == 3 and all(v is not None and v >= 0 for v in u["components"].values()), u
        assert 0 < u["expanded_pct"] < p["limit_pct"] / 3, (p["label"], u)   # a usable test
        assert u["expanded_pct"] == pytest.approx(2 * u["combined_pct"], abs=1e-4)


def test_ambient_comes_from_the_bench_when_not_entered(result, data):
    res, _ = _write(result, data / "c2")
    assert res["lab"]["ambient"] == {"temperature_c": 23.0, "humidity_pct": 50.0, "source": "reported by the bench"}


def test_certificate_numbers_are_unique(result, data):
    nums = {_write(result, data / ("n%d" % i))[0]["lab"]["certificate_number"] for i in range(3)}
    assert len(nums) == 3


def test_plot_is_titled_with_meter_and_date_and_its_axis_is_percent_of_ib(result, data):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    made = []
    orig = Figure.savefig

    def keep(self, *a, **k):
        made.append(self)
        return orig(self, *a, **k)
    Figure.savefig = keep
    try:
        res, _ = _write(result, data / "plot")
    finally:
        Figure.savefig = orig
    ax = made[-1].axes[0]
    assert res["meter"] in ax.get_title() and res["lab"]["issued"][:10] in ax.get_title()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "100" in labels and "5" in labels and not any("10^" in x or "$" in x for x in labels), labels
    assert ax.get_xlabel() == "current, % of Ib"


def test_csv_has_sensible_precision_and_words(result, data):
    _, paths = _write(result, data / "csv")
    text = open(paths["csv"]).read()
    head, first = text.splitlines()[:2]
    assert "uncertainty_pct_k2" in head and "True" not in text and "False" not in text
    err = first.split(",")[head.split(",").index("error_pct")]
    assert len(err.split(".")[1]) == 3, first


def test_verify_accepts_the_signed_certificate_and_refuses_tampering(result, data, capsys):
    _, paths = _write(result, data / "good")
    folder = os.path.dirname(paths["json"])
    pub = signing.public_path(signing.default_key_path())
    assert cli.main(["calibrate", "verify", folder, "--public-key", pub, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] is True and out["certificate"].startswith("CAL-")

    def tampered(name, change):
        bad = data / ("bad-" + name.replace(".", "-"))
        shutil.copytree(folder, bad)
        p = bad / name
        change(p)
        rc = cli.main(["calibrate", "verify", str(bad), "--public-key", pub])
        return rc, capsys.readouterr().err

    def edit_json(p):
        d = json.load(open(p))
        d["points"][0]["error_pct"] = 0.0
        p.write_text(json.dumps(d))
    rc, err = tampered("certificate.json", edit_json)
    assert rc == 1 and "certificate.json was changed" in err
    rc, err = tampered("error_curve.png", lambda p: p.write_bytes(p.read_bytes() + b"\0"))
    assert rc == 1 and "error_curve.png was changed" in err

    def renumber(p):
        d = json.load(open(p))
        d["certificate"] = "CAL-1999-00001"
        p.write_text(json.dumps(d))
    rc, err = tampered("certificate.sig", renumber)
    assert rc == 1 and "signature does not match" in err

    # another lab's key
    other = data / "other"
    other.mkdir()
    signing.load_or_make_key(str(other / "k.pem"))
    rc = cli.main(["calibrate", "verify", folder, "--public-key", str(other / "k.pub.pem")])
    assert rc == 1 and "signature does not match" in capsys.readouterr().err


def test_signing_key_is_private_to_its_owner(result, data):
    _write(result, data / "k")
    assert os.stat(signing.default_key_path()).st_mode & 0o077 == 0
