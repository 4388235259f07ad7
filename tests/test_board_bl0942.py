"""The BL0942 DIN-rail board (boards/esp32_bl0942): its board.json wires the metering chip to UART1 at
4800 8N1, and the shared ESP32 board module (against a fake `machine`) carries the real BL0942 driver's
frames to the simulator's BL0942 model on the far end of the UART."""
import json
import random
import types
from pathlib import Path

from host_tools.sim.world.chips.bl0942 import BL0942 as Model
from metering import registry
from metering.chip import OK
from metering.meter import Meter
from test_board_esp32 import Env

ROOT = Path(__file__).resolve().parent.parent
BOARD_DIR = ROOT / "boards" / "esp32_bl0942"
INFO = json.loads((BOARD_DIR / "board.json").read_text())


def test_pin_map_is_documented_and_free_of_clashes():
    pins = dict(line.split(",") for line in (BOARD_DIR / "pins.csv").read_text().split())
    readme = (BOARD_DIR / "README.md").read_text()
    for name, gpio in INFO["pins"].items():
        assert pins[name] == "GPIO%d" % gpio, name
        assert name in readme, "pin %s not in the README's pin map" % name
    u = INFO["metering"]["uart"]
    assert pins["meter_tx"] == "GPIO%d" % u["tx"] and pins["meter_rx"] == "GPIO%d" % u["rx"]
    used = [int(v[4:]) for v in pins.values()]
    assert len(used) == len(set(used)), "two names on one GPIO"
    assert not set(used) & {0, 1, 3, 6, 7, 8, 9, 10, 11, 12, 15}, "a strapping, console or flash pin"
    assert INFO["metering"]["chip"] == "bl0942" and INFO["metering"]["bus"] == "uart"
    assert (BOARD_DIR / "board.py").resolve() == (ROOT / "boards" / "esp32_atm90e26" / "board.py").resolve()


def test_board_meter_uart_reaches_the_chip_and_the_meter_reads_it(monkeypatch, tmp_path):
    env = Env(monkeypatch)
    try:
        board = env.board.Board(info_path=str(BOARD_DIR / "board.json"))
        log = env.m.log
        assert ("uart_init", 1, 4800) in log
        model = Model(random.Random(1))
        model.set_inputs(230 * 0.25, 10 * 0.5, 0.0, 50.0)

        def respond(tx):
            if tx[0] == 0x58:
                return model.uart(tx, 23 if tx[1] == 0xAA else 4)
            return model.uart(tx, 0)
        board.meter_uart.responder = respond
        clock = types.SimpleNamespace(ticks_ms=env.vt.ticks_ms, ticks_diff=env.vt.ticks_diff,
                                      sleep_ms=env.vt.sleep_ms)
        met = INFO["metering"]
        chip = registry.make_chip(met, board.meter_bus, clock, dict(met["calibration"]))
        events = types.SimpleNamespace(items=[], emit=lambda k, d=None: events.items.append(k))
        meter = Meter(chip, clock, events, met["meter_constant_imp_per_kwh"], registry.max_power_w(met))
        assert meter.begin(), events.items
        assert model.peek(0x19) == 0x0F, "MODE was not written through the board's UART"
        model.advance(3600.0)
        meter.poll()
        assert meter.health == OK
        assert abs(meter.reading.urms_cv - 23000) <= 5 and abs(meter.reading.p_w - 2300) <= 2, meter.readings()
        got = meter.import_wh + meter.import_rem / meter.den
        assert abs(got - 2300) <= 0.4, got
        # a silent chip: no byte back within the window, the exchange returns 0 and the probe says so
        board.meter_uart.responder = lambda tx: b""
        meter.poll()
        assert meter.health != OK and "meter_silent" in events.items
    finally:
        env.close()
