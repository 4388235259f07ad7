"""The toolkit's error hierarchy: every error says what happened and what to do, and maps to an exit code."""


class MeterkitError(Exception):
    """A failure the user can act on. `hint` says what to do; `exit_code` is what the CLI returns."""

    exit_code = 2

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def as_dict(self):
        d = {"error": self.message, "kind": type(self).__name__}
        if self.hint:
            d["hint"] = self.hint
        return d

    def __str__(self):
        return self.message + (f" ({self.hint})" if self.hint else "")


class UsageError(MeterkitError):
    """Bad arguments or input."""


class DeviceError(MeterkitError):
    """A meter, board or port did not answer or answered wrongly."""

    exit_code = 3


class SimulationError(MeterkitError):
    """The simulated world or the firmware inside it failed."""

    exit_code = 4
