"""The VISA bench (host_tools/calibrate/bench/visa.py) against pyvisa-sim instruments defined in
host_tools/calibrate/bench/sim_instruments.yaml: identification by *IDN?, each model profile's commands
accepted by its instrument, the error queue read after every command, a timeout turned into a clear
error, the source's output off on every failure path; and, coupled to a simulated meter's world
(bench/visa_sim.py), the whole calibration procedure through real PyVISA sessions."""
import json
import math

import pytest

from host_tools.calibrate.bench import BenchError, InstrumentError, open_bench
from host_tools.calibrate.bench import profiles as P
from host_tools.calibrate.bench import visa
from host_tools.calibrate.bench.sim import SimBench
from host_tools.calibrate.bench.visa_sim import device_of, open_coupled
from host_tools.calibrate.lab import run_lab
from host_tools.cli import main
from host_tools.errors import UsageError
from test_calibrate_fixtures import ChipDirectMeter

LIB = "%s@sim" % visa.SIM_INSTRUMENTS
SRC, MTR, HUNG = "ASRL1::INSTR", "ASRL2::INSTR", "ASRL3::INSTR"
FLUKE = "USB0::0x0F7E::0x6105::1234567::INSTR"
CAL5520 = "GPIB0::4::INSTR"
CHROMA = "TCPIP0::192.168.0.66::inst0::INSTR"
WT310E = "USB0::0x0B21::0x0025::C2SIM0001::INSTR"


def rm():
    return visa.resource_manager(LIB)


def state(bench, role="source"):
    """The simulated instrument's own settings (what it accepted)."""
    inst = bench.source if role == "source" else bench.meter
    return {k: p.get_value() for k, p in device_of(inst.res).__dict__["_properties"].items()}


def own_profile(tmp_path, base, **changes):
    prof = dict(P.load(base), **changes)
    path = tmp_path / ("%s-test.json" % base)
    path.write_text(json.dumps(prof))
    return str(path)


@pytest.fixture
def bench():
    b = visa.open_visa_bench("%s,%s" % (SRC, MTR), rm=rm(), timeout_ms=500)
    yield b
    b.close()


def test_instruments_are_identified_by_their_idn_answer(bench):
    assert bench.source.profile["model"] == "generic-scpi-source"
    assert bench.meter.profile["model"] == "generic-scpi-meter"
    assert bench.source.idn.startswith("Meterkit,Generic SCPI Source")
    info = bench.info()
    assert info["kind"] == "visa" and info["reference_class_pct"] == 0.02
    assert "ASRL2::INSTR" in info["reference"] and info["scanning_head"] == "pulse input of the reference meter"


def test_every_shipped_profile_loads_and_names_where_its_syntax_comes_from():
    names = P.names()
    assert {"generic-scpi-source", "fluke-6105a", "generic-scpi-meter", "chroma-66204", "yokogawa-wt310e"} <= set(names)
    for n in names:
        prof = P.load(n)
        assert prof["model"] == n and prof.get("syntax"), n
    assert P.names("source") == ["fluke-5520a", "fluke-6105a", "generic-scpi-source"]


def test_set_sends_the_profiles_commands_and_switches_the_output_on(bench):
    bench.set(230, 5, 0.5, 50)
    s = state(bench)
    assert s["volts"] == pytest.approx(230) and s["amps"] == pytest.approx(5) and s["freq_hz"] == 50
    assert s["phase_deg"] == pytest.approx(60.0, abs=1e-3)           # current lags by 60 degrees
    assert s["output"] == "ON"
    bench.set(230, 5, -0.8, 50)
    assert state(bench)["phase_deg"] == pytest.approx(-math.degrees(math.acos(0.8)), abs=1e-3)
    bench.off()
    assert state(bench)["output"] == "OFF"


def test_fluke_6105a_profile_drives_phase_one_harmonic_one(tmp_path):
    b = visa.open_visa_bench("%s,%s" % (FLUKE, MTR), rm=rm(), timeout_ms=500)
    try:
        assert b.source.profile["model"] == "fluke-6105a"
        b.set(230, 5, 0.5, 50)
        s = state(b)
        assert s["volts"] == pytest.approx(230) and s["output"] == "ON"
        assert s["current"] == "5.00000,-60.000"                 # lagging current sent as a negative angle
        with pytest.raises(BenchError, match="freq_hz = 60"):
            b.set(230, 5, 1.0, 60)                               # frequency is the front panel's
        assert state(b)["output"] == "OFF"
    finally:
        b.close()


def test_fluke_5520a_profile_sets_power_output_and_lagging_power_factor():
    b = visa.open_visa_bench("%s,%s" % (CAL5520, MTR), rm=rm(), timeout_ms=500)
    try:
        assert b.source.profile["model"] == "fluke-5520a"
        b.set(230, 5, 0.5, 50)
        s = state(b)
        assert s["out"] == "230.0000V,5.00000A,50.000HZ" and s["dpf_value"] == pytest.approx(0.5), s
        b.set(230, 5, -0.8, 50)
        assert state(b)["dpf_lead"] == pytest.approx(0.8)
        b.set(264.5, 0, 1.0, 50)                                 # creep: voltage only
        assert state(b)["out"] == "264.5000V,50.000HZ"
        with pytest.raises(BenchError, match="amps = 80"):
            b.set(230, 80, 1.0)                                  # beyond the calibrator's 20.5 A
    finally:
        b.close()


@pytest.mark.parametrize("resource, model, volts", [(CHROMA, "chroma-66204", 230.01), (WT310E, "yokogawa-wt310e", 229.98)])
def test_power_meter_profiles_read_their_instruments(resource, model, volts):
    b = visa.open_instrument(rm(), resource, None, "meter", 500)
    try:
        assert b.profile["model"] == model
        for cmd in b.profile["init"]:
            b.write(cmd)                                         # every init command is accepted
        r = b.numbers(b.profile["measure"]["query"], b.profile["measure"]["fields"])
        assert r["volts"] == pytest.approx(volts) and r["freq_hz"] == pytest.approx(50)
        integ = b.profile["integrator"]
        for cmd in integ["start"] + integ["stop"]:
            b.write(cmd)
        assert b.numbers(integ["query"], integ["fields"])["wh"] == pytest.approx(0.6389)
    finally:
        b.close()


def test_a_meter_without_a_pulse_input_cannot_calibrate():
    with pytest.raises(UsageError, match="neither generic-scpi-source nor chroma-66204 counts"):
        visa.open_visa_bench("%s,%s" % (SRC, CHROMA), rm=rm(), timeout_ms=500)


def test_an_error_queue_entry_is_a_bench_error_and_the_output_goes_off(tmp_path, bench):
    bench.set(230, 5, 1.0)
    assert state(bench)["output"] == "ON"
    wide = own_profile(tmp_path, "generic-scpi-source", limits={"volts": [0, 1000], "amps": [0, 100],
                                                                 "freq_hz": [45, 65]})
    b = visa.open_visa_bench("%s,%s,%s+generic-scpi-meter" % (SRC, MTR, wide), rm=rm(), timeout_ms=500)
    try:
        b.set(230, 5, 1.0)
        with pytest.raises(BenchError) as e:
            b.set(400, 5, 1.0)                                   # the instrument's range ends at 300 V
        msg = e.value.message
        assert "-222" in msg and "SOUR:VOLT 400.000" in msg and "generic-scpi-source" in msg, msg
        s = state(b)
        assert s["output"] == "OFF" and s["volts"] == pytest.approx(230), s
        assert b.source.errors() == []                           # the queue was drained
    finally:
        b.close()


def test_an_unknown_command_in_a_profile_is_refused_at_opening(tmp_path):
    bad = own_profile(tmp_path, "generic-scpi-meter", init=["*CLS", "INTEG:MODE:BOGUS 1"])
    with pytest.raises(BenchError, match=r"-113.*INTEG:MODE:BOGUS 1"):
        visa.open_visa_bench("%s,%s,generic-scpi-source+%s" % (SRC, MTR, bad), rm=rm(), timeout_ms=500)


def test_a_reference_meter_that_does_not_answer_is_a_timeout_error_and_the_output_goes_off():
    b = visa.open_visa_bench("%s,%s,generic-scpi-source+generic-scpi-meter" % (SRC, HUNG), rm=rm(), timeout_ms=200)
    try:
        b.set(230, 5, 1.0)
        with pytest.raises(BenchError) as e:
            b.reference(0.01)
        assert "did not answer 'MEAS:ALL?' within 200 ms" in e.value.message, e.value.message
        assert "ASRL3::INSTR" in e.value.message
        assert state(b)["output"] == "OFF"
    finally:
        b.close()


def test_a_resource_that_does_not_exist_is_a_clear_error():
    with pytest.raises(BenchError, match="(cannot open|no instrument answered .IDN. as) the source at ASRL9::INSTR"):
        visa.open_visa_bench("ASRL9::INSTR,%s" % MTR, rm=rm())


@pytest.mark.parametrize("spec, needle", [("ASRL1::INSTR", "two VISA resources"),
                                          ("ASRL1::INSTR,,x", "two VISA resources"),
                                          ("A,B,no-such-model", "no instrument profile"),
                                          ("A,B,generic-scpi-meter+generic-scpi-source+x", "too many")])
def test_bad_bench_specs_are_usage_errors(spec, needle):
    with pytest.raises(UsageError, match=needle):
        visa.parse_spec(spec)


def test_a_profile_of_the_wrong_kind_is_refused(tmp_path):
    with pytest.raises(UsageError, match="is a meter profile, used as the source"):
        P.load("generic-scpi-meter", "source")


# ---- coupled to a simulated meter's world ------------------------------------------------------------

def test_coupled_source_drives_the_world_only_with_what_the_instrument_accepted(tmp_path):
    m = ChipDirectMeter(seed=2, afe="ideal")
    wide = own_profile(tmp_path, "generic-scpi-source", limits={"volts": [0, 1000], "amps": [0, 100],
                                                                 "freq_hz": [45, 65]})
    b = open_coupled("%s,%s,%s+generic-scpi-meter" % (SRC, MTR, wide), m, LIB, seed=2)
    try:
        b.set(230, 10, 0.5)
        sb = m.world.bench
        assert isinstance(sb, SimBench) and sb.volts == 230 and sb.amps == 10
        assert sb.phi == pytest.approx(math.radians(60))
        r = b.reference(1.0)
        assert r["watts"] == pytest.approx(230 * 10 * 0.5, rel=1e-3) and r["pf"] == pytest.approx(0.5, abs=1e-3)
        with pytest.raises(BenchError, match="-222"):
            b.set(500, 10, 0.5)
        assert sb.volts == 0 and sb.amps == 0                      # refused -> output off, world unpowered
    finally:
        b.close()
    assert m.world.bench is None                                   # the meter is back on its household load


def test_coupled_gate_sees_an_ideal_meter_within_the_references_class():
    m = ChipDirectMeter(seed=2, afe="ideal")
    b = open_coupled("%s,%s" % (SRC, MTR), m, LIB, seed=2)
    try:
        b.set(230, 10, 1.0)
        b.run(0.5)
        g = b.gate(3.0, 1)
        assert g.pulses >= 6 and g.seconds >= 3.0
        assert abs(g.error(3200)) < 5e-4, g.as_dict()
        assert b.count_pulses(2.0) >= 3
        b.set(230, 0, 1.0)
        with pytest.raises(BenchError, match="gate timed out"):
            b.gate(1.0, 1, timeout_s=2.0)
        assert m.world.bench.volts == 0                            # a failed gate leaves the source off
    finally:
        b.close()


def test_a_reversed_phase_convention_is_caught_before_it_is_calibrated_against(tmp_path):
    m = ChipDirectMeter(seed=2, afe="ideal")
    rev = own_profile(tmp_path, "generic-scpi-source", phase_sign=-1)
    b = open_coupled("%s,%s,%s+generic-scpi-meter" % (SRC, MTR, rev), m, LIB, seed=2)
    try:
        b.set(230, 5, 0.5)
        with pytest.raises(BenchError, match="phase sign is reversed"):
            b.reference(0.5)
        assert m.world.bench.volts == 0
    finally:
        b.close()


def test_the_calibration_procedure_runs_through_the_visa_bench_like_the_simulated_one():
    results = {}
    for kind in ("sim", "visa"):
        m = ChipDirectMeter(seed=5)
        b = SimBench(m, seed=5) if kind == "sim" else open_coupled("%s,%s" % (SRC, MTR), m, LIB, seed=5)
        try:
            results[kind] = run_lab(m, b, "1", write_report=False)
        finally:
            b.close()
    sim, vis = results["sim"], results["visa"]
    assert vis["status"] == "PASSED" and vis["stored_in_meter"], vis["reason"]
    assert vis["worst_error_pct"] < 0.2
    assert vis["bench"]["kind"] == "visa" and "pyvisa-sim" in vis["bench"]["simulated"]["instruments"]
    # The same meter, source wander and reference: the same uncalibrated error and registers within a count
    # or two (the phase goes to the instrument as degrees with 3 decimals, which moves a pulse edge by a
    # millisecond now and then).
    for k in ("pf1_pct", "pf05l_pct"):
        assert vis["calibration"]["uncalibrated_error_pct"][k] == pytest.approx(
            sim["calibration"]["uncalibrated_error_pct"][k], abs=0.005), k
    for reg in ("Ugain", "IgainL", "Lgain", "Lphi"):
        assert abs(vis["registers_after"][reg] - sim["registers_after"][reg]) <= 2, (
            reg, vis["registers_after"][reg], sim["registers_after"][reg])


def test_open_bench_visa_needs_a_resource_pair():
    with pytest.raises(UsageError, match="two VISA resources"):
        open_bench("visa:")


def test_cli_calibrates_a_simulated_meter_through_simulated_instruments(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("METERKIT_DATA", str(tmp_path))
    rc = main(["calibrate", "--bench", "visa:%s,%s,generic-scpi-source+generic-scpi-meter" % (SRC, MTR),
               "--visa-library", LIB, "--seed", "3", "--report", str(tmp_path / "cert"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["passed"] is True, out
    assert out["worst_error_pct"] < 0.2
    cert = json.loads((tmp_path / "cert" / "certificate.json").read_text())
    assert cert["bench"]["kind"] == "visa" and cert["bench"]["profiles"]["meter"] == "generic-scpi-meter"


@pytest.mark.parametrize("args, needle", [
    (["--bench", "visa:ASRL1::INSTR"], "two VISA resources"),
    (["--bench", "visa:ASRL1::INSTR,ASRL2::INSTR", "--visa-library", "@py"], "--port is required"),
])
def test_cli_bench_errors_are_one_line_and_exit_2(args, needle, capsys):
    assert main(["calibrate"] + args + ["--json"]) == 2
    assert needle in json.loads(capsys.readouterr().out)["error"]


def test_cli_timeout_of_a_simulated_instrument_exits_3(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("METERKIT_DATA", str(tmp_path))
    rc = main(["calibrate", "--bench", "visa:%s,%s,generic-scpi-source+generic-scpi-meter" % (SRC, HUNG),
               "--visa-library", LIB, "--report", str(tmp_path / "cert"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 3 and "did not answer" in out["error"], out
    assert not (tmp_path / "cert").exists()                        # no certificate for a bench fault


def test_an_instrument_fault_mid_calibration_leaves_the_meter_as_it_came():
    m = ChipDirectMeter(seed=3)
    cal0 = dict(m.cal)
    b = open_coupled("%s,%s" % (SRC, HUNG), m, LIB, seed=3)
    try:
        with pytest.raises(InstrumentError, match="did not answer 'MEAS:ALL\\?'"):
            run_lab(m, b, "1", write_report=False)
        assert m.cal == cal0 and m.stored is None                  # test-mode registers dropped, nothing stored
        assert m.world.bench.volts == 0                            # source off
    finally:
        b.close()


# ---- the real transport: pyvisa-py over a LAN socket ---------------------------------------------------

class SocketInstrument:
    """A pyvisa-sim instrument definition served as a raw SCPI socket on 127.0.0.1 (as LAN instruments
    serve port 5025), so pyvisa-py reaches it as TCPIP0::127.0.0.1::PORT::SOCKET. Stopped by the fixture."""

    def __init__(self, resource):
        import socket
        import threading

        from pyvisa_sim import parser
        self.device = parser.get_devices(str(visa.SIM_INSTRUMENTS), False)[resource]
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import socket
        self.sock.settimeout(0.1)
        conn = None
        buf = b""
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn, _ = self.sock.accept()
                    conn.settimeout(0.1)
                data = conn.recv(4096)
                if not data:
                    conn.close()
                    conn = None
                    continue
            except socket.timeout:
                continue
            except OSError:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self.received.append(line.decode())
                self.device.write(line + b"\n")
                out = b""
                while True:
                    b, _ = self.device.read()
                    if not b:
                        break
                    out += b
                if out:
                    conn.sendall(out)
        if conn is not None:
            conn.close()

    def close(self):
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def lan_pair():
    src, met = SocketInstrument("ASRL1::INSTR"), SocketInstrument("ASRL2::INSTR")
    yield src, met
    src.close()
    met.close()


def test_instruments_on_the_lan_through_pyvisa_py(lan_pair):
    src, met = lan_pair
    spec = "TCPIP0::127.0.0.1::%d::SOCKET,TCPIP0::127.0.0.1::%d::SOCKET" % (src.port, met.port)
    b = visa.open_visa_bench(spec, rm=visa.resource_manager("@py"), timeout_ms=2000)
    try:
        assert (b.source.profile["model"], b.meter.profile["model"]) == ("generic-scpi-source", "generic-scpi-meter")
        b.set(230, 5, 0.5)
        r = b.reference(0.05)
        assert r["volts"] == pytest.approx(230.0) and r["amps"] == pytest.approx(5.0)
        assert src.device._properties["output"].get_value() == "ON"
    finally:
        b.close()
    assert src.device._properties["output"].get_value() == "OFF"
    # Every command on the wire was followed by the error query.
    cmds = [m for m in src.received if m not in ("*IDN?", "SYST:ERR?")]
    assert cmds[:2] == ["*CLS", "OUTP OFF"] and "SOUR:PHAS 60.000" in cmds
    after = [src.received[i + 1] for i, m in enumerate(src.received) if m in cmds and i + 1 < len(src.received)]
    assert set(after) == {"SYST:ERR?"}, after
