"""`meterkit console`: an interactive console on a meter's service port, as Tasmota's console is for
its devices: type a request (`credit`, `token 1234...`, `relay open`), read the reply in units. Lines
are kept in a history file (readline: arrows recall, Ctrl-R searches, Tab completes a request). Digits
alone are a token."""
import json
import shlex
import sys

from host_tools.device import requests
from host_tools.errors import MeterkitError
from host_tools.paths import data_dir

HISTORY = ".meterkit_console_history"


class Console:
    def __init__(self, client, db=None, history=None, stdin=None, out=None):
        self.c = client
        self.db = db
        self.history = history or str(data_dir() / HISTORY)
        self.stdin = stdin or sys.stdin
        self.out = out or sys.stdout
        self.readline = None

    def _setup_history(self):
        try:
            import readline
        except ImportError:   # no readline on this Python: the console still works, without history
            return
        self.readline = readline
        try:
            readline.read_history_file(self.history)
        except OSError:
            pass
        readline.set_history_length(1000)
        words = sorted(list(requests.REQUESTS) + ["help", "quit", "raw"])

        def complete(text, state):
            hits = [w for w in words if w.startswith(text)]
            return hits[state] if state < len(hits) else None
        readline.set_completer(complete)
        readline.parse_and_bind("tab: complete")

    def _save_history(self):
        if self.readline is not None:
            try:
                self.readline.write_history_file(self.history)
            except OSError:
                pass

    def say(self, text):
        self.out.write(text + "\n")
        self.out.flush()

    def help(self):
        self.say("requests:")
        for name, (_, _, priv, text) in requests.REQUESTS.items():
            self.say("  %-13s %s%s" % (name, text, "  [privileged: --db]" if priv else ""))
        self.say("  DIGITS        the same as token DIGITS")
        self.say("  raw JSON      send one service request as it is, e.g. raw {\"cmd\": \"ping\"}")
        self.say("  help, quit")

    def banner(self):
        try:
            ident = self.c.call("identity")
            ping = self.c.call("ping")
        except MeterkitError as e:
            self.say("the meter does not answer: %s" % e)
            return "meter"
        name = ident.get("meter_id") or "unprovisioned"
        self.say("connected to %s on %s: board %s, firmware %s%s" % (
            name, self.c.port, ping.get("board"), ping.get("version"),
            ", factory mode" if ident.get("factory_mode") else ""))
        self.say("type help for the requests, quit to leave")
        return name

    def handle(self, line):
        """Run one console line; returns False to leave."""
        line = line.strip()
        if not line:
            return True
        if line in ("quit", "exit", "q"):
            return False
        if line in ("help", "?"):
            self.help()
            return True
        try:
            if line.startswith("raw "):
                req = json.loads(line[4:])
                if not isinstance(req, dict) or "cmd" not in req:
                    self.say("raw needs a JSON object with a cmd")
                    return True
                cmd = req.pop("cmd")
                req.pop("id", None)
                self.say(json.dumps(self.c.call(cmd, **req), sort_keys=True))
                return True
            words = shlex.split(line)
            name = words[0].lower()
            rest = words[1:]
            if "".join(words).replace("-", "").isdigit():
                name, rest = "token", words
            reply, _ = requests.run(self.c, name, rest, db=self.db)
            requests.show(name, reply, file=self.out)
        except MeterkitError as e:
            self.say("error: %s" % e)
        except ValueError as e:
            self.say("error: %s" % e)
        return True

    def loop(self):
        name = self.banner()
        interactive = self.stdin is sys.stdin
        if interactive:
            self._setup_history()
        try:
            while True:
                try:
                    if interactive:
                        line = input("%s> " % name)
                    else:
                        self.out.write("%s> " % name)
                        self.out.flush()
                        line = self.stdin.readline()
                        if not line:
                            raise EOFError
                except EOFError:
                    self.say("")
                    break
                except KeyboardInterrupt:
                    self.say("")   # Ctrl-C drops the line, as a shell does; quit or Ctrl-D leaves
                    continue
                if not self.handle(line):
                    break
        finally:
            self._save_history()
        return 0
