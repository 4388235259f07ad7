"""The meter's event log in RAM: what happened (faults, tamper, supply changes), counted by kind and
kept as a bounded ring for the service port and the uplink. A persistent log sits behind it when
the store is attached (`sink`)."""


class Events:
    def __init__(self, clock, size=32, sink=None):
        self.clock = clock
        self.size = size
        self.ring = []
        self.counts = {}
        self.seq = 0
        self.sink = sink
        self.listeners = []

    def emit(self, kind, data=None):
        self.seq += 1
        e = (self.seq, self.clock.time(), kind, data)
        self.ring.append(e)
        if len(self.ring) > self.size:
            self.ring.pop(0)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.sink:
            self.sink(e)
        for fn in self.listeners:
            fn(kind, data)
        return self.seq

    def since(self, seq=0):
        return [e for e in self.ring if e[0] > seq]
