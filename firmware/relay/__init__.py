"""The supply switch: the latching-relay driver (`latching`) and the supply state machine (`supply`)."""


def _cfg():
    # The relay and supply config checks (relaycfg.py) run once at boot: load them for that one call
    # and forget them again, so they are not resident.
    import sys
    from relay import relaycfg
    sys.modules.pop("relay.relaycfg", None)
    delattr(sys.modules["relay"], "relaycfg")
    return relaycfg
