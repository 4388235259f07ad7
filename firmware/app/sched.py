"""A cooperative scheduler (the meter's superloop): periodic jobs on the board clock, and input
handlers run as soon as the board says input is waiting. All timing uses wrapping ticks.

A job may say how long it has nothing to do (`quiet`: a function returning milliseconds, 0 while
busy): after each run it is not woken again before then (at most `quiet_max_ms` on, for the timers
it does not know of), and before each sleep it is brought back to one period on as soon as it says
it is busy again (an input, another job or an event gave it work). The link polls the modem once a
second while something is under way, and sleeps to its next timer on a quiet session.

Each job counts its runs and the processor time it took (`us`, from the port's microsecond ticks:
real time, not the board clock, so a simulated meter's profile shows where the interpreter works);
`status` reports them."""
import time

_us = getattr(time, "ticks_us", None)         # absent under CPython (unit tests)
_us_diff = getattr(time, "ticks_diff", None)


class Job:
    def __init__(self, name, period_ms, fn, due, quiet=None, quiet_max_ms=0):
        self.name = name
        self.period_ms = period_ms
        self.fn = fn
        self.due = due
        self.quiet = quiet
        self.quiet_max_ms = quiet_max_ms
        self.runs = 0
        self.us = 0         # microseconds spent running (wraps at 2**30 like ticks: a profile, not a meter)
        self.fails = 0      # failures in a row
        self.next = None    # set by the job itself: when to run next instead of one period on


class Scheduler:
    def __init__(self, clock, watchdog=None, on_error=None):
        self.clock = clock
        self.watchdog = watchdog
        self.on_error = on_error
        self.jobs = []
        self._quiet_jobs = []   # the jobs that say when they have nothing to do (_wake_busy)
        self.input_handlers = []
        self.input_fails = 0
        self.running = False
        self.ticks = 0  # loop iterations, for benchmarks

    def every(self, name, period_ms, fn, first_in_ms=0, quiet=None, quiet_max_ms=10000):
        c = self.clock
        job = Job(name, period_ms, fn, c.ticks_add(c.ticks_ms(), first_in_ms), quiet, quiet_max_ms)
        self.jobs.append(job)
        if quiet is not None:
            self._quiet_jobs.append(job)
        return job

    def on_input(self, fn):
        self.input_handlers.append(fn)

    def set_period(self, name, period_ms):
        for j in self.jobs:
            if j.name == name:
                j.period_ms = period_ms

    def _call(self, name, fn, job=None):
        """Run fn; a failure goes to on_error(name, exc, failures in a row) (which may escalate)."""
        try:
            fn()
        except Exception as e:  # a failing job is an event, never the end of metering by itself
            if job is not None:
                job.fails += 1
                fails = job.fails
            else:
                self.input_fails += 1
                fails = self.input_fails
            if self.on_error:
                self.on_error(name, e, fails)
            else:
                raise
            return
        if job is not None:
            job.fails = 0
        else:
            self.input_fails = 0

    def run_due(self):
        c = self.clock
        for job in self.jobs:
            now = c.ticks_ms()
            if c.ticks_diff(now, job.due) >= 0:
                if _us is not None:
                    t0 = _us()
                    self._call(job.name, job.fn, job)
                    job.us = (job.us + _us_diff(_us(), t0)) & 0x3FFFFFFF
                else:
                    self._call(job.name, job.fn, job)
                job.runs += 1
                nxt = job.next
                job.next = None
                if nxt is None:
                    nxt = c.ticks_add(job.due, job.period_ms)
                    if job.quiet is not None:
                        q = self._quiet(job)
                        if q > job.period_ms:
                            nxt = c.ticks_add(c.ticks_ms(), q)
                # Fell more than a period behind (a long fault or a reboot): re-anchor instead of bursting.
                if c.ticks_diff(nxt, c.ticks_ms()) < 0:
                    nxt = c.ticks_add(c.ticks_ms(), job.period_ms)
                job.due = nxt

    def _quiet(self, job):
        try:
            q = job.quiet()
        except Exception:       # noqa: BLE001 - a job that cannot say keeps its period
            return 0
        return q if q < job.quiet_max_ms else job.quiet_max_ms

    def _wake_busy(self):
        """A quiet job that has work again runs within one period (see the module docstring)."""
        c = self.clock
        for job in self._quiet_jobs:
            now = c.ticks_ms()
            q = self._quiet(job)
            lim = q if q > job.period_ms else job.period_ms
            if c.ticks_diff(job.due, now) > lim:
                job.due = c.ticks_add(now, lim)

    def profile(self):
        """{job name: [runs, milliseconds spent]}."""
        out = {}
        for j in self.jobs:
            out[j.name] = [j.runs, j.us // 1000]
        return out

    def set_due(self, job, ticks):
        """Run `job` next at `ticks` (outside its own run: an input that changes its plans)."""
        job.due = ticks
        job.next = None

    def others_due_in(self, job):
        """Milliseconds until the first job other than `job` is due (<= 0: one is due now)."""
        c = self.clock
        now = c.ticks_ms()
        best = None
        for j in self.jobs:
            if j is not job:
                d = c.ticks_diff(j.due, now)
                if best is None or d < best:
                    best = d
        return best

    def next_due(self):
        c = self.clock
        now = c.ticks_ms()
        best = None
        for job in self.jobs:
            d = c.ticks_diff(job.due, now)
            if best is None or d < best:
                best = d
        return c.ticks_add(now, best if best is not None and best > 0 else 0)

    def step(self):
        """One superloop pass: run due jobs, feed the watchdog, sleep until the next job or input."""
        self.run_due()
        self._wake_busy()
        if self.watchdog:
            self.watchdog.feed()
        self.ticks += 1
        if self.clock.sleep_until(self.next_due()):
            for fn in self.input_handlers:
                self._call("input", fn)

    def run(self):
        self.running = True
        while self.running:
            self.step()

    def stop(self):
        self.running = False
