"""The supply switch: the latching-relay driver (`latching`) and the supply state machine (`supply`)."""
