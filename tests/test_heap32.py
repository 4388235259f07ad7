"""The 32-bit memory measurement (`make bench`, host_tools/bench/heap32_bench.py) works: the firmware
runs on npm's 32-bit WebAssembly MicroPython against the in-process board, provisioned, with its
cellular side online, takes an STS token and a statement; the same run on the 64-bit unix port; the
32-bit heap is the smaller and the figures are the ones the bench reports."""
import pytest

from host_tools.bench import heap32_bench as hb
from host_tools.bench import wasm32

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = tmp_path_factory.mktemp("heap32")
    return w, hb.tree(w)


def test_the_32bit_interpreter_is_installed():
    wasm32.node()      # UsageError naming `make node_modules` when it is not


@pytest.mark.parametrize("name,fn", [("wasm32", hb.run_wasm), ("unix64", hb.run_unix)])
def test_full_meter_runs_on_the_in_process_board(work, name, fn):
    w, t = work
    prov, token = hb.provision_request()
    r = fn(t, w, "full", prov, token, seconds=120)
    assert r["word_bits"] == (32 if name == "wasm32" else 64), r["word_bits"]
    assert r["link"] == "up" and r["token"] == "accepted" and r["statement"], (r["link"], r["token"], r["statement"])
    assert r["published"] > 0 and r["polls"] >= 120, r
    assert 0 < r["heap_live_bytes"] <= r["heap_peak_bytes"], r
    assert "comms.cellular" in r["modules"] and "comms.link" in r["modules"] and "heapboard" in r["modules"]
    # Code for boot, rare commands and the link's climb is loaded for its call only, not kept resident.
    kept = sorted(set(r["modules"]) & {"app.build", "app.appcmds", "app.settings", "comms.ladder",
                                        "provision.identity", "metering.registry", "metering.calibration"})
    assert kept == [], kept
    assert r["qstr_bytes"] > 0, r["qstr_bytes"]
    if name == "wasm32":
        # The same objects on 32 bits: each word is half the size (the bench's README figures).
        r64 = hb.run_unix(t, w, "full", prov, token, seconds=120)
        assert r["heap_live_bytes"] < r64["heap_live_bytes"], (r["heap_live_bytes"], r64["heap_live_bytes"])


def test_import_groups_put_leaves_first_and_app_last():
    g = hb.groups(["app", "app.composition", "prepaid", "prepaid.core", "credit.ledger", "store.records",
                   "metering.meter", "comms.link", "comms.cellular", "ui.display", "heapboard", "gc"])
    names = [x[0] for x in g]
    assert names == ["store", "metering", "prepaid", "ui", "comms", "core"], names
    assert dict(g)["prepaid"] == ["credit.ledger", "prepaid.core", "prepaid"], dict(g)["prepaid"]


def test_qstr_info_line_is_read_into_numbers():
    q = hb._qstr_info("qstr pool: n_pool=7, n_qstr=1870, n_str_data_bytes=17494, n_total_bytes=35494")
    assert q == {"n_pool": 7, "n_qstr": 1870, "n_str_data_bytes": 17494, "n_total_bytes": 35494}, q
