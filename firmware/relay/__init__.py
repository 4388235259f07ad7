"""The supply switch: the latching-relay driver (`latching`) and the supply state machine (`supply`)."""


def _cfg():
    # The relay and supply config checks (relaycfg.py) run once at boot: load them for that one call
    # and forget them again, so they are not resident.
    from util.lazy import once
    return once("relay.relaycfg")
