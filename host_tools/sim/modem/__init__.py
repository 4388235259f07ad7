"""The cellular modem at AT-command level: a shared core (core.py: AT parser, state, TCP bridge, SMS
store) and one module per SIMCom dialect (sim7600.py with its TLS stack in tls.py, sim800.py); the SMS
centre behind it (smsc.py) and the PDU codec (sms_pdu.py). See docs/sim-modem.md."""

DIALECTS = ("sim7600", "sim800")


def make_modem(rng, dialect="sim7600", **kwargs):
    """The modem model for `dialect` (the board's `modem.dialect`); keyword arguments as `ModemCore`."""
    if dialect == "sim7600":
        from host_tools.sim.modem.sim7600 import Sim7600 as cls
    elif dialect == "sim800":
        from host_tools.sim.modem.sim800 import Sim800 as cls
    else:
        raise ValueError(f"unknown modem dialect {dialect!r}: sim7600 or sim800")
    return cls(rng, **kwargs)
