"""What the cellular bearer adds to bytes crossing the modem's data path, in virtual time: a round trip
(half of it each way) and a bandwidth each way, bytes queued behind the ones before them (a pipe that
carries one byte after another). The firmware never learns of it: bytes reach the broker, and the
meter, later. AT commands and their answers are the modem's own and do not cross the bearer.

Profiles:
- `lte` (the default): the bearer adds nothing, as the model always did (an LTE Cat-1 link's 50-100 ms
  round trip and megabits a second are below what a meter's traffic notices). Seeded runs with it are
  byte-for-byte what they were before profiles existed.
- `2g`: a GPRS link. Typical figures for a GPRS multislot class 10 modem (4 downlink + 1 uplink or
  3 + 2 timeslots; coding scheme CS-2 carries 13.4 kbit/s a timeslot, so at most 53.6 kbit/s down and
  26.8 kbit/s up), as commonly quoted for what such a link gives an application in practice: about
  40 kbit/s down, 20 kbit/s up, 600-700 ms round trip. Typical values, not measured on a network.

`LinkProfile(rtt_ms, down_bps, up_bps)`; a bandwidth of None is unlimited."""


class LinkProfile:
    def __init__(self, name, rtt_ms=0, down_bps=None, up_bps=None):
        self.name = name
        self.rtt_ms = rtt_ms
        self.down_bps = down_bps
        self.up_bps = up_bps

    @property
    def shaped(self):
        """False: the bearer adds nothing (the modem takes its old, untimed path)."""
        return bool(self.rtt_ms or self.down_bps or self.up_bps)

    def airtime_ms(self, n, bps):
        """Milliseconds n bytes take at `bps` bits a second (0 when unlimited)."""
        return n * 8000.0 / bps if bps else 0.0

    def as_dict(self):
        return {"name": self.name, "rtt_ms": self.rtt_ms, "down_bps": self.down_bps, "up_bps": self.up_bps}

    def __repr__(self):
        return "LinkProfile(%r, rtt_ms=%r, down_bps=%r, up_bps=%r)" % (self.name, self.rtt_ms, self.down_bps,
                                                                        self.up_bps)


PROFILES = {
    "lte": LinkProfile("lte"),
    "2g": LinkProfile("2g", rtt_ms=650, down_bps=40000, up_bps=20000),
}


def get(profile):
    """A LinkProfile from a name in PROFILES, a LinkProfile (as it is) or None (`lte`)."""
    if profile is None:
        return PROFILES["lte"]
    if isinstance(profile, LinkProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError("unknown link profile %r: %s" % (profile, ", ".join(sorted(PROFILES)))) from None
