"""The local service port: JSON lines in, one JSON line out per request (`{"id": 1, "cmd": "ping"}` ->
`{"id": 1, "ok": true, ...}`). Bounded line buffer; a bad line gets an error reply, never a crash."""
import json

from util import call


class ServicePort:
    def __init__(self, stream, max_line=1024, ctx=None):
        self.stream = stream
        self.ctx = ctx            # handed to on-demand command modules
        self.lazy = {}            # command -> module name, the module imported only while it runs
        self.lazy_ctx = {}        # module name -> its ctx, when not the port's
        self.max_line = max_line
        self.buf = bytearray()
        self.handlers = {}
        self.privileged = set()
        # gate(request) -> None to allow a privileged command, or the refusal text. Set by the app:
        # open in factory mode, challenge-response once provisioned.
        self.gate = None
        self.overflow = False
        self.requests = 0

    def command(self, name, fn, privileged=False):
        """Register fn(request_dict) -> dict (merged into the reply)."""
        self.handlers[name] = fn
        if privileged:
            self.privileged.add(name)

    def command_module(self, module, names, privileged=(), ctx=None):
        """Commands served by `module.handle(ctx, cmd, req)` (`ctx` or the port's): the module is
        imported when one of them arrives and dropped after the reply, so rarely used code costs no
        heap the rest of the time."""
        for n in names:
            self.lazy[n] = module
            if n in privileged:
                self.privileged.add(n)
        if ctx is not None:
            self.lazy_ctx[module] = ctx

    def _run_lazy(self, module, cmd, req):
        return call(module, "handle", self.lazy_ctx.get(module, self.ctx), cmd, req)

    def poll(self):
        data = self.stream.read()
        while data:
            for b in data:
                if b == 10 or b == 13:
                    if self.overflow:
                        self._reply({"ok": False, "error": "line too long (max %d bytes)" % self.max_line})
                        self.overflow = False
                    elif self.buf:
                        line = bytes(self.buf)
                        self.buf = bytearray()
                        self._handle(line)
                elif not self.overflow:
                    if len(self.buf) >= self.max_line:
                        self.overflow = True
                        self.buf = bytearray()
                    else:
                        self.buf.append(b)
            data = self.stream.read()

    def _handle(self, line):
        self.requests += 1
        try:
            req = json.loads(line)
        except ValueError:
            self._reply({"ok": False, "error": "not JSON: send one JSON object per line"})
            return
        if not isinstance(req, dict):
            self._reply({"ok": False, "error": "request must be a JSON object"})
            return
        rid = req.get("id")
        cmd = req.get("cmd")
        if not isinstance(cmd, str):
            cmd = None        # a list or object is no command (and no dict key: TypeError)
        fn = self.handlers.get(cmd)
        lazy = self.lazy.get(cmd) if fn is None else None
        if fn is None and lazy is None:
            self._reply({"id": rid, "ok": False, "error": "unknown command %r" % (req.get("cmd"),),
                         "commands": sorted(list(self.handlers) + list(self.lazy))})
            return
        if cmd in self.privileged and self.gate is not None:
            refusal = self.gate(req)
            if refusal:
                self._reply({"id": rid, "ok": False, "error": refusal, "privileged": True})
                return
        try:
            out = fn(req) if fn is not None else self._run_lazy(lazy, cmd, req)
        except Exception as e:  # a handler bug must not take the meter down
            self._reply({"id": rid, "ok": False, "error": "%s: %s" % (type(e).__name__, e)})
            return
        reply = {"id": rid, "ok": True}
        if out:
            reply.update(out)
        self._reply(reply)

    def _reply(self, obj):
        self.stream.write(json.dumps(obj).encode() + b"\n")
