"""The simulated calibration bench: a source and a reference standard driving a simulated meter's
world (`world.bench`), a scanning head on the chip's CF output; plus `BenchServer` (JSON lines over
TCP on 127.0.0.1, hosted by the simulator process) and `RemoteBench`, its client.

The source is not perfect: every second it draws a new small deviation of voltage, current and phase
(seeded). The reference standard sees the same physical signals and has its own small seeded gain
error (class 0.02: within +-0.01 %), so a calibration against it inherits that error, as on a real
bench. Time passes only through `meter.run_for(seconds)`; pulse edges are detected to the world's
1 ms step (the error this leaves in a gate of T seconds is below 1 ms / T).
"""
import json
import math
import random
import socket
import threading

from host_tools.calibrate.bench.base import Bench, BenchError, PulseGate, pf_to_phi

# Source instability per second (uniform bounds) and the reference class, by default.
DEFAULT_JITTER = {"volts_rel": 2e-4, "amps_rel": 2e-4, "phase_deg": 0.005}
DEFAULT_REFERENCE_CLASS_PCT = 0.02
_WATCH_CHUNK_S = 0.01          # how far time runs between checks while waiting for a pulse edge


class SimBench(Bench):
    """A bench on a simulated meter: `meter` has `.world` and `.run_for(seconds)` (a SimMeter)."""

    kind = "sim"

    def __init__(self, meter, seed=0, reference_class_pct=DEFAULT_REFERENCE_CLASS_PCT, jitter=None):
        self.meter = meter
        self.world = meter.world
        self.seed = seed
        self.reference_class_pct = reference_class_pct
        self.jitter = dict(DEFAULT_JITTER if jitter is None else jitter)
        rng = random.Random("bench-reference:%s" % seed)
        half = reference_class_pct / 200.0
        # The reference's own errors: energy/power, voltage, current (each within half its class).
        self.ref_gain = 1 + rng.uniform(-half, half)
        self.ref_v_gain = 1 + rng.uniform(-half, half)
        self.ref_i_gain = 1 + rng.uniform(-half, half)
        self._jrng = random.Random("bench-source:%s" % seed)
        self.volts = self.amps = self.phi = 0.0
        self.freq_hz = 50.0
        self._jv = self._ji = self._jphi = 0.0
        self._t_ms = self.world.now_ms
        self._opened_ms = self.world.now_ms
        # Integrals since bench start, of true power (Ws), reactive power, V*s, A*s, V^2 s, A^2 s.
        self._acc = [0.0] * 6
        self._ticking = False
        self.attached = False

    # -- the physics the world asks for -------------------------------------------------------------
    def signals(self):
        """(volts, amps, phi_rad, freq_hz) at the meter's terminals now."""
        if not self.volts:
            return 0.0, 0.0, 0.0, self.freq_hz
        return (self.volts * (1 + self._jv), self.amps * (1 + self._ji), self.phi + self._jphi,
                self.freq_hz)

    def power_w(self):
        v, i, phi, _ = self.signals()
        return v * i * math.cos(phi)

    def _accumulate(self):
        """Integrate the (piecewise constant) true signals up to the world's present time."""
        now = self.world.now_ms
        dt = (now - self._t_ms) / 1000.0
        if dt > 0:
            v, i, phi, _ = self.signals()
            a = self._acc
            a[0] += v * i * math.cos(phi) * dt
            a[1] += v * i * math.sin(phi) * dt
            a[2] += v * dt
            a[3] += i * dt
            a[4] += v * v * dt
            a[5] += i * i * dt
        self._t_ms = now

    def _changed(self):
        self.world._update_inputs()

    def integrals(self):
        """The true integrals since the bench opened, up to now: [W s, var s, V s, A s, V^2 s, A^2 s]
        (what an instrument coupled to this world reads; bench/visa_sim.py)."""
        self._accumulate()
        return list(self._acc)

    def _attach(self):
        if not self.attached:
            self._accumulate()
            self.world.bench = self
            self.attached = True
            self._changed()
        if not self._ticking:
            self._ticking = True
            self.world.schedule(self.world.now_ms + 1000, self._tick)

    def detach(self):
        """Give the meter back to its household load."""
        self._accumulate()
        if self.attached:
            self.world.bench = None
            self.attached = False
            self.world._update_inputs()

    def _tick(self, world):
        """Once a second: the source's next small deviation."""
        if not self.attached:
            self._ticking = False
            return
        self._accumulate()
        j = self.jitter
        u = self._jrng.uniform
        self._jv = u(-j["volts_rel"], j["volts_rel"])
        self._ji = u(-j["amps_rel"], j["amps_rel"])
        self._jphi = math.radians(u(-j["phase_deg"], j["phase_deg"]))
        world.schedule(world.now_ms + 1000, self._tick)

    # -- source ------------------------------------------------------------------------------------
    def set(self, volts, amps, pf=1.0, freq_hz=50.0):
        if volts < 0 or amps < 0 or not 40 <= freq_hz <= 70:
            raise BenchError("source cannot produce %r V, %r A, %r Hz" % (volts, amps, freq_hz),
                             hint="volts and amps must be >= 0, frequency 40..70 Hz")
        try:
            phi = pf_to_phi(pf)
        except ValueError as e:
            raise BenchError(str(e), hint="use a signed power factor: 0.5 inductive, -0.8 capacitive") from None
        self._attach()
        self._accumulate()
        self.volts, self.amps, self.phi, self.freq_hz = float(volts), float(amps), phi, float(freq_hz)
        self._changed()

    def off(self):
        self._accumulate()
        self.volts = self.amps = 0.0
        if self.attached:
            self._changed()

    # -- time ----------------------------------------------------------------------------------------
    def run(self, seconds):
        if seconds > 0:
            self.meter.run_for(seconds)
        self._accumulate()

    def elapsed_s(self):
        return (self.world.now_ms - self._opened_ms) / 1000.0

    # -- reference standard ------------------------------------------------------------------------
    def reference_energy_wh(self):
        self._accumulate()
        return self._acc[0] * self.ref_gain / 3600.0

    def reference(self, seconds):
        self._accumulate()
        a0 = list(self._acc)
        t0 = self.world.now_ms
        self.run(seconds)
        t = (self.world.now_ms - t0) / 1000.0
        if t <= 0:
            raise BenchError("a reference reading needs time to pass", hint="ask for seconds > 0")
        d = [x - y for x, y in zip(self._acc, a0)]
        p = d[0] / t * self.ref_gain
        q = d[1] / t * self.ref_gain
        v = math.sqrt(d[4] / t) * self.ref_v_gain
        i = math.sqrt(d[5] / t) * self.ref_i_gain
        s = math.hypot(p, q)
        pf = p / s if s > 0 else 1.0
        if q < 0:
            pf = -pf
        return {"volts": v, "amps": i, "watts": p, "vars": q, "pf": pf, "freq_hz": self.freq_hz,
                "wh": d[0] * self.ref_gain / 3600.0, "seconds": t}

    # -- scanning head -----------------------------------------------------------------------------
    def count_pulses(self, seconds):
        c0 = self.world.chip.cf_pulses
        self.run(seconds)
        return self.world.chip.cf_pulses - c0

    def gate(self, min_seconds, min_pulses=1, timeout_s=60.0):
        w = self.world
        st = {"phase": 0, "last": w.chip.cf_pulses, "stop": False}
        min_ms = int(round(min_seconds * 1000))

        def watch(world):
            # Runs at every 1 ms step while an edge is awaited; a count that changed since the last
            # step is an edge inside that step.
            if st["stop"]:
                return
            c = world.chip.cf_pulses
            nxt = world.now_ms + 1
            if st.pop("resync", False):
                pass                                   # first look after skipping: no edge known here
            elif c != st["last"]:
                if st["phase"] == 0:
                    st.update(phase=1, c0=c, t0=world.now_ms, e0=self.reference_energy_wh())
                    if min_ms > 2:
                        # Nothing to watch until the gate may close: skip to just before.
                        nxt = world.now_ms + min_ms - 1
                        st["resync"] = True
                elif world.now_ms - st["t0"] >= min_ms and c - st["c0"] >= min_pulses:
                    st.update(phase=2, c1=c, t1=world.now_ms, e1=self.reference_energy_wh())
                    return
            st["last"] = c
            world.schedule(nxt, watch)

        w.schedule(w.now_ms + 1, watch)
        deadline = w.now_ms + int(timeout_s * 1000)
        try:
            while st["phase"] < 2 and w.now_ms < deadline:
                step = _WATCH_CHUNK_S
                if st["phase"] == 1:
                    # The gate cannot close before min_seconds: run most of the way in one go.
                    left = (st["t0"] + min_ms - w.now_ms) / 1000.0
                    step = max(step, left - 0.005)
                self.run(min(step, (deadline - w.now_ms) / 1000.0))
        finally:
            st["stop"] = True
        if st["phase"] < 2:
            got = st["last"] - st.get("c0", st["last"])
            raise BenchError("no meter test pulses: %d pulse edge(s) in %.1f s" % (
                1 + got if st["phase"] else 0, timeout_s),
                hint="the meter does not register at this load (check the connection, the start-up threshold)")
        return PulseGate(st["c1"] - st["c0"], st["e1"] - st["e0"], (st["t1"] - st["t0"]) / 1000.0,
                         (st["t0"] - self._opened_ms) / 1000.0)

    def info(self):
        return {"kind": "sim", "seed": self.seed, "reference_class_pct": self.reference_class_pct,
                "source_jitter": dict(self.jitter), "reference": "simulated reference standard",
                "scanning_head": "chip CF output, 1 ms edge resolution",
                # the simulated lab is held at the reference conditions of IEC 62053-21/-22
                "ambient": {"temperature_c": 23.0, "humidity_pct": 50.0}}

    def close(self):
        """Source off, and the meter back to its household load (taken off the bench)."""
        self.off()
        self.detach()


# ---- the bench over a socket ---------------------------------------------------------------------------

_OPS = ("set", "off", "run", "measure", "status", "release")


class BenchServer:
    """JSON lines on 127.0.0.1 for a simulated meter's bench. The simulator's loop calls `poll()`
    (or `serve_once()`) between its own steps; each call handles every complete request waiting.
    Requests: {"op": "set", "volts", "amps", "pf", "freq_hz"}, {"op": "off"}, {"op": "run", "seconds"},
    {"op": "measure", "what": "reference"|"gate"|"count"|"energy", ...}, {"op": "status"},
    {"op": "release"} (source off, the meter back to its household load); each
    reply is {"ok": true, ...} or {"ok": false, "error", "hint"}. `lock` is held while a request
    runs, so a host that also drives the meter from another thread can share it."""

    def __init__(self, meter, host="127.0.0.1", port=0, bench=None, **bench_args):
        self.bench = bench or SimBench(meter, **bench_args)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(4)
        self.sock.setblocking(False)
        self.address = "%s:%d" % self.sock.getsockname()
        self.clients = {}
        self.lock = threading.RLock()
        self.requests = 0
        self._busy = False

    def poll(self):
        """Handle whatever is waiting; returns at once when called again from inside a request (a
        measurement runs the meter, whose loop may call poll() again)."""
        with self.lock:
            if self._busy:
                return
            self._busy = True
            try:
                self._accept()
                for conn in list(self.clients):
                    self._read(conn)
            finally:
                self._busy = False

    serve_once = poll

    def sockets(self):
        """The listening socket and every client's: readable means poll() has something to do."""
        try:
            return [self.sock] + list(self.clients)
        except RuntimeError:      # a client came or went in another thread: the next call sees it
            return [self.sock]

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            self.clients[conn] = b""

    def _read(self, conn):
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        buf = self.clients[conn] + data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                reply = self.handle_line(line)
                try:
                    conn.setblocking(True)
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                    conn.setblocking(False)
                except OSError:
                    self._drop(conn)
                    return
        self.clients[conn] = buf

    def _drop(self, conn):
        self.clients.pop(conn, None)
        try:
            conn.close()
        except OSError:
            pass

    def handle_line(self, line):
        """One request line -> one reply dict (never raises)."""
        self.requests += 1
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError
        except ValueError:
            return {"ok": False, "error": "not a JSON object", "hint": "send one JSON object per line"}
        try:
            out = self.handle(req)
        except BenchError as e:
            return {"ok": False, "error": e.message, "hint": e.hint}
        except (KeyError, TypeError, ValueError) as e:
            return {"ok": False, "error": "bad request %r: %s" % (req.get("op"), e),
                    "hint": "ops: " + ", ".join(_OPS)}
        out["ok"] = True
        return out

    def handle(self, req):
        b = self.bench
        op = req.get("op")
        if op == "set":
            b.set(float(req["volts"]), float(req["amps"]), float(req.get("pf", 1.0)),
                  float(req.get("freq_hz", 50.0)))
            return {}
        if op == "off":
            b.off()
            return {}
        if op == "release":
            b.close()
            return {}
        if op == "run":
            b.run(float(req["seconds"]))
            return {"elapsed_s": b.elapsed_s()}
        if op == "measure":
            what = req.get("what", "reference")
            if what == "reference":
                return {"reference": b.reference(float(req["seconds"]))}
            if what == "gate":
                g = b.gate(float(req["min_seconds"]), int(req.get("min_pulses", 1)),
                           float(req.get("timeout_s", 60.0)))
                return {"gate": dict(g.as_dict(), started_at_s=g.started_at_s)}
            if what == "count":
                return {"pulses": b.count_pulses(float(req["seconds"]))}
            if what == "energy":
                return {"wh": b.reference_energy_wh()}
            raise ValueError("unknown measurement %r (reference, gate, count, energy)" % (what,))
        if op == "status":
            return {"info": b.info(), "elapsed_s": b.elapsed_s(),
                    "source": {"volts": b.volts, "amps": b.amps, "freq_hz": b.freq_hz,
                               "pf": round(math.cos(b.phi), 6) * (1 if b.phi >= 0 else -1)}}
        raise ValueError("unknown op %r" % (op,))

    def close(self):
        with self.lock:
            for conn in list(self.clients):
                self._drop(conn)
            self.sock.close()


class RemoteBench(Bench):
    """The client of a BenchServer: `RemoteBench("127.0.0.1:40123")`."""

    kind = "sim-remote"

    def __init__(self, address, timeout_s=30.0):
        host, _, port = address.rpartition(":")
        host = host or "127.0.0.1"
        self.address = "%s:%s" % (host, port)
        self.timeout_s = timeout_s
        try:
            self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        except (OSError, ValueError) as e:
            raise BenchError("cannot reach the simulated bench at %s: %s" % (address, e),
                             hint="start the meter with `meterkit sim start --json` and pass the "
                                  "address it prints as `bench` (--bench sim:HOST:PORT)") from None
        self._buf = b""
        self._status = None

    def _call(self, op, wait_s=None, **args):
        args["op"] = op
        try:
            self.sock.settimeout(wait_s or self.timeout_s)
            self.sock.sendall(json.dumps(args).encode() + b"\n")
            while b"\n" not in self._buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise OSError("the bench closed the connection")
                self._buf += chunk
        except (OSError, socket.timeout) as e:
            raise BenchError("simulated bench at %s: %s during %r" % (self.address, e or "timeout", op),
                             hint="is the simulator still running?") from None
        line, self._buf = self._buf.split(b"\n", 1)
        reply = json.loads(line)
        if not reply.get("ok"):
            raise BenchError("bench refused %r: %s" % (op, reply.get("error")), hint=reply.get("hint"))
        return reply

    def set(self, volts, amps, pf=1.0, freq_hz=50.0):
        self._call("set", volts=volts, amps=amps, pf=pf, freq_hz=freq_hz)

    def off(self):
        self._call("off")

    def run(self, seconds):
        self._call("run", wait_s=self.timeout_s + seconds * 10, seconds=seconds)

    def reference(self, seconds):
        return self._call("measure", wait_s=self.timeout_s + seconds * 10, what="reference",
                          seconds=seconds)["reference"]

    def reference_energy_wh(self):
        return self._call("measure", what="energy")["wh"]

    def gate(self, min_seconds, min_pulses=1, timeout_s=60.0):
        g = self._call("measure", wait_s=self.timeout_s + timeout_s * 10, what="gate",
                       min_seconds=min_seconds, min_pulses=min_pulses, timeout_s=timeout_s)["gate"]
        return PulseGate.from_dict(g)

    def count_pulses(self, seconds):
        return self._call("measure", wait_s=self.timeout_s + seconds * 10, what="count",
                          seconds=seconds)["pulses"]

    def elapsed_s(self):
        return self._call("status")["elapsed_s"]

    def info(self):
        d = dict(self._call("status")["info"])
        d["address"] = self.address
        return d

    def close(self):
        try:
            self._call("release")
        except BenchError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def open_bench(argument, meter=None, seed=0):
    """`--bench sim:HOST:PORT` -> RemoteBench; `--bench sim` -> a SimBench on an in-process meter."""
    from host_tools.errors import UsageError
    if argument:
        return RemoteBench(argument)
    if meter is None or not hasattr(meter, "world"):
        raise UsageError("--bench sim without an address needs an in-process simulated meter",
                         hint="for a meter started with `meterkit sim start --json` use --bench sim:ADDRESS "
                              "(the `bench` it prints); or drop --port to calibrate a meter simulated here")
    return SimBench(meter, seed=seed)
