"""`with part:` for the parts the tools start (brokers, databases, the agency's stack, simulated
chains): `start()` returns the part, and `close()` is called on the way out, also when `start()`
failed half-way, so a broker or database a failed start had already launched never outlives the
caller. `close()` must cope with a part that never started."""


class Managed:
    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()
