"""The simulated bench: its reference standard against the world's truth, pulse gating on the chip's CF
output, the source's signed power factor and instability, and the bench over TCP (BenchServer and
RemoteBench). On the chip-direct meter (no firmware) so they run in milliseconds."""
import pytest

from host_tools.calibrate.bench import BenchError, open_bench
from host_tools.calibrate.bench.sim import BenchServer, RemoteBench, SimBench
from host_tools.errors import UsageError
from test_calibrate_fixtures import ChipDirectMeter, polled


def test_reference_energy_is_the_worlds_true_energy_times_its_own_small_error():
    m = ChipDirectMeter(seed=4, afe="ideal")
    b = SimBench(m, seed=4)
    assert abs(b.ref_gain - 1) <= 1e-4 and b.ref_gain != 1.0        # class 0.02: within +-0.01 %
    b.set(230, 10, 1.0)
    w0, e0 = m.world.true_import_wh, b.reference_energy_wh()
    b.run(10.5)
    true_wh = m.world.true_import_wh - w0
    assert true_wh == pytest.approx(230 * 10 * 10.5 / 3600, rel=3e-4)   # source wander is small
    assert b.reference_energy_wh() - e0 == pytest.approx(true_wh * b.ref_gain, rel=1e-9)


def test_source_wanders_each_second_within_its_bounds():
    m = ChipDirectMeter(seed=4, afe="ideal")
    b = SimBench(m, seed=4)
    b.set(230, 10, 1.0)
    volts = []
    for _ in range(5):
        b.run(1.0)
        volts.append(b.signals()[0])
    assert len(set(volts)) == 5
    assert all(abs(v / 230 - 1) <= 2e-4 for v in volts)


def test_reference_reports_signed_power_factor():
    m = ChipDirectMeter(seed=1, afe="ideal")
    b = SimBench(m, seed=1)
    b.set(230, 5, 0.5)
    r = b.reference(2.0)
    assert r["pf"] == pytest.approx(0.5, abs=1e-3) and r["vars"] > 0
    b.set(230, 5, -0.8)
    r = b.reference(2.0)
    assert r["pf"] == pytest.approx(-0.8, abs=1e-3) and r["vars"] < 0
    assert r["watts"] == pytest.approx(230 * 5 * 0.8, rel=1e-3)


def test_pulse_gate_on_an_ideal_meter_shows_only_the_references_error():
    m = ChipDirectMeter(seed=2, afe="ideal")
    b = SimBench(m, seed=2)
    b.set(230, 10, 1.0)
    b.run(0.5)
    g = b.gate(3.0, 1)
    assert g.pulses >= 6 and g.seconds >= 3.0
    assert g.error(3200) == pytest.approx(1 / b.ref_gain - 1, abs=4e-4)


def test_pulse_gate_without_current_is_a_clear_bench_error():
    m = ChipDirectMeter(seed=2, afe="ideal")
    b = SimBench(m, seed=2)
    b.set(230, 0, 1.0)
    t0 = b.elapsed_s()
    with pytest.raises(BenchError, match="no meter test pulses"):
        b.gate(1.0, 1, timeout_s=5.0)
    assert b.elapsed_s() - t0 == pytest.approx(5.0, abs=0.02)


def test_bench_refuses_impossible_settings_and_open_bench_needs_a_meter():
    m = ChipDirectMeter(seed=2)
    b = SimBench(m)
    with pytest.raises(BenchError):
        b.set(230, 1, 0.0)
    with pytest.raises(UsageError):
        open_bench("sim")
    with pytest.raises(UsageError):
        open_bench("")
    with pytest.raises(UsageError):
        open_bench("fluke:COM3")


def test_bench_detach_gives_the_meter_back_to_its_load():
    m = ChipDirectMeter(seed=2)
    b = SimBench(m)
    b.set(230, 10, 1.0)
    assert m.world.bench is b
    b.detach()
    assert m.world.bench is None


@pytest.fixture
def served():
    """A BenchServer on a chip-direct meter, polled by a thread as the simulator's loop would."""
    m = ChipDirectMeter(seed=5, afe="ideal")
    with polled(BenchServer(m, seed=5)) as srv:
        yield m, srv


def test_remote_bench_drives_the_simulated_bench_over_tcp(served):
    m, srv = served
    rb = RemoteBench(srv.address)
    try:
        rb.set(230, 10, 0.5)
        ref = rb.reference(1.0)
        assert ref["watts"] == pytest.approx(1150, rel=1e-3) and ref["pf"] == pytest.approx(0.5, abs=1e-3)
        g = rb.gate(2.0, 1)
        assert g.pulses >= 1 and g.error(3200) == pytest.approx(0, abs=1e-3)
        assert rb.count_pulses(3.0) in (3, 4, 5)           # 1150 W at 3200 imp/kWh: 1.02 pulses/s
        assert rb.elapsed_s() == pytest.approx(srv.bench.elapsed_s())
        assert rb.info()["kind"] == "sim" and rb.info()["address"] == srv.address
        with pytest.raises(BenchError, match="no meter test pulses"):
            rb.set(230, 0, 1.0)
            rb.gate(1.0, 1, timeout_s=2.0)
        with pytest.raises(BenchError, match="power factor"):
            rb.set(230, 1, 2.0)
    finally:
        rb.close()
    assert srv.bench.volts == 0.0                                 # closing switched the source off


def test_bench_server_answers_bad_requests_without_dying():
    m = ChipDirectMeter(seed=5)
    srv = BenchServer(m)
    try:
        assert srv.handle_line(b"not json")["ok"] is False
        r = srv.handle_line(b'{"op": "explode"}')
        assert r["ok"] is False and "explode" in r["error"]
        assert srv.handle_line(b'{"op": "set"}')["ok"] is False           # missing volts
        assert srv.handle_line(b'{"op": "status"}')["ok"] is True
    finally:
        srv.close()


def test_remote_bench_without_a_server_says_how_to_start_one():
    with pytest.raises(BenchError, match="sim start"):
        RemoteBench("127.0.0.1:1")
