"""`meterkit` verbs' arguments: the argparse tree of host_tools/cli.py walked in-process, each verb given
valid and mutated argument lists built from its own option names and from values that point at real,
junk and missing files (a head-end database, meter and customer CSVs, a binary file). A run must end in
a usage error or a clean exit with a code (argparse's SystemExit, or `main`'s return); any other
exception is an escape (a traceback for the user). stdin is empty and the working and data folders are
temporary, so nothing waits for a person and nothing is written outside.

EXCLUDED (why): verbs that start long-running services or simulations, touch serial ports, boards or
benches, or change the vending key module: flash, deploy, sim *, device, console, monitor, provision,
selftest, calibrate, demo, build (compiles the whole firmware: seconds per run), keys init, keys
import, headend serve, agency serve, agency demo, agency scenario, headend ota upload/campaign. The
option `--wait` (waits for a meter's answer) is never given."""
import contextlib
import io
import os
import random
import sys
from pathlib import Path

from host_tools.fuzz.harness import Violation
from host_tools.fuzz.mutate import mutate_argv

EXCLUDED = ("flash", "deploy", "sim", "device", "console", "monitor", "provision", "selftest", "calibrate", "demo",
            "build", "keys init", "keys import", "headend serve", "agency serve", "agency demo", "agency scenario",
            "headend ota upload", "headend ota campaign")
NEVER = ("--wait",)


def _tree(parser, path=()):
    """[(verb path tuple, parser)] of the leaves."""
    import argparse
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser)]
    out = []
    for a in subs:
        for name, sp in a.choices.items():
            out += _tree(sp, path + (name,))
    return out


class CliTarget:
    name = "cli"
    cover = ("/host_tools/",)

    def __init__(self, work):
        from host_tools.cli import build_parser
        from host_tools.headend.demo import make_fleet
        from host_tools.headend.store import Store
        self.work = Path(work) / "cli"
        self.work.mkdir(parents=True, exist_ok=True)
        csv_path, keystore, rows = make_fleet(str(self.work / "fleet"), 2, rng=random.Random(9))
        db = self.work / "he.db"
        s = Store(db)
        s.import_csv(csv_path)
        s.close()
        junk = self.work / "junk.bin"
        junk.write_bytes(bytes(range(256)) * 4)
        cust = self.work / "customers.csv"
        cust.write_text("name,phone,meters\nA,+22236000001,%s\n" % rows[0]["meter_id"])
        badcsv = self.work / "bad.csv"
        badcsv.write_bytes(b"name,phone,meters\r\nA,+2223\r6000001,x\xff\xfe\n")
        self.values = [str(db), str(csv_path), str(keystore), str(junk), str(cust), str(badcsv), "/nonexistent/x.db",
                       str(self.work), rows[0]["meter_id"], rows[0]["pan"], "600727000000000009", "0", "1", "-1", "25",
                       "1e9", "nan", "99999999999999999999", "", "x", "é", "relay_open", "set_time", '{"unix": 1}', "{",
                       "12345678901234567890", "1234 5678 9012 3456 7890", "fr", "ar", "operator", "admin", "auto",
                       "sim", "abababababababab949494949494949401234567"]
        self.leaves = [(p, sp) for p, sp in _tree(build_parser())
                       if not any(" ".join(p) == e or " ".join(p).startswith(e + " ") for e in EXCLUDED)]
        self.verbs = sorted(" ".join(p) for p, _ in self.leaves)

    def _options(self, sp):
        opts, positionals = [], []
        for a in sp._actions:
            if a.option_strings:
                if not any(o in NEVER for o in a.option_strings) and a.option_strings[0] not in ("-h",):
                    opts.append((a.option_strings[-1], a.nargs != 0))
            else:
                positionals.append(a)
        return opts, positionals

    def seeds(self):
        out = []
        for p, sp in self.leaves:
            opts, pos = self._options(sp)
            argv = list(p) + [self.values[0] if i == 0 else self.values[8] for i, _ in enumerate(pos)]
            if any(o == "--db" for o, _ in opts):
                argv += ["--db", self.values[0]]
            out.append({"argv": argv})
            out.append({"argv": argv + ["--json"] if any(o == "--json" for o, _ in opts) else argv})
        return out

    def generate(self, rng):
        p, sp = rng.choice(self.leaves)
        opts, pos = self._options(sp)
        argv = list(p)
        for _ in pos:
            argv.append(rng.choice(self.values))
        for o, takes in rng.sample(opts, min(len(opts), rng.randint(0, 4))):
            argv.append(o)
            if takes:
                argv.append(rng.choice(self.values))
        return {"argv": argv}

    def mutate(self, rng, x):
        argv = list(x["argv"])
        n = 1 if len(argv) > 1 and argv[0] in ("headend", "agency", "ota", "keys", "vend", "token") else 0
        head, tail = argv[:n + 1], argv[n + 1:]
        words = [o for _, sp in self.leaves for o in self._options(sp)[0] and [o for o, _ in self._options(sp)[0]]]
        tail = [a for a in mutate_argv(rng, tail, words[:200] + self.values) if a not in NEVER]
        return {"argv": head + tail}

    def run(self, x):
        from host_tools.cli import main
        argv = [a for a in x["argv"] if a not in NEVER]
        if " ".join(argv[:3]) in EXCLUDED or " ".join(argv[:2]) in EXCLUDED or argv[:1] and argv[0] in EXCLUDED:
            return "excluded"
        out, err = io.StringIO(), io.StringIO()
        cwd = os.getcwd()
        stdin = sys.stdin
        env = {k: os.environ.get(k) for k in ("METERKIT_DATA", "METERKIT_OPERATOR_PASSWORD")}
        try:
            os.chdir(self.work)
            os.environ["METERKIT_DATA"] = str(self.work)
            os.environ.pop("METERKIT_OPERATOR_PASSWORD", None)
            sys.stdin = io.StringIO("")
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    rc = main(argv)
                except SystemExit as e:
                    rc = e.code
        finally:
            sys.stdin = stdin
            os.chdir(cwd)
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.last_output = out.getvalue() + err.getvalue()     # what the verb said (a test reads it)
        if rc is not None and not isinstance(rc, int):
            raise Violation("%s ended with %r, not an exit code" % (" ".join(argv[:2]), rc))
        if rc and "Traceback" in err.getvalue():
            raise Violation("%s printed a traceback: %s" % (" ".join(argv[:2]), err.getvalue()[-800:]))
        return "%s:%s" % (" ".join(argv[:2]), "ok" if not rc else rc)
