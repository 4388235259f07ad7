"""The supply switch: the latching-relay driver (`latching`) and the supply state machine (`supply`)."""


def settings_check():
    """The relay and supply settings checks (relaycfg.py), loaded for the caller's one call and
    forgotten again, so they are not resident (they run at boot and on set_config)."""
    from util import once
    return once("relay.relaycfg")
