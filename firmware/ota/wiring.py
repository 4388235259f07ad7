"""The updater in the running app: its job (chunk requests over the link, the switch at a quiet moment,
the new image's health check), the `fw_offer` command, and the chunks arriving on `meters/<id>/fw`.

Wire format (docs/ota.md): the meter asks on `meters/<id>/fwreq` with "SHA8 OFFSET LENGTH" (QoS 0);
the head-end answers on `meters/<id>/fw` with "FC SHA8 OFFSET BASE64(data) HEX(mac)", mac the first 8
bytes of HMAC-SHA-256(message key, b"fw" + SHA8 + u32 LE offset + data)."""
import json
import struct
from binascii import a2b_base64, unhexlify

TRUST_FILE = "/ota_trust.json"


def start(app):
    """The update service, or None on a board without OTA slots (no `esp32.Partition`) or a store."""
    if app.store is None:
        return None
    try:
        import esp32
        esp32.Partition(esp32.Partition.RUNNING)
    except Exception:
        return None
    from ota.updater import Updater          # only on a board with OTA slots
    try:
        with open((app.root or "") + TRUST_FILE) as f:
            trust = json.load(f).get("keys", [])
    except Exception:
        trust = []         # no trusted key: every offer is refused (bad_signature)
    key = None
    try:
        from util import once
        k = once("provision.identity").load_keys(app.store)     # read at start only: not kept resident
        key = k and k.get("message_key")
    except Exception:
        key = None
    from fwversion import VERSION
    s = app.settings
    u = Updater(app.store, esp32.Partition, app.clock, app.events.emit, app.board.info["name"], VERSION, trust,
                _mac(key) if key else None, gap_ms=s.get("ota_gap_ms", 250), trial_s=s.get("ota_trial_s", 600))
    svc = OtaService(app, u)

    def migrate():
        from ota import migrate as m
        m.run(app.store, VERSION, emit=app.events.emit)
    u.on_valid = migrate
    u.boot()
    app.sched.every("ota", 1000, svc.tick, quiet=svc.quiet_ms)
    if app.cellular is not None:
        app.cellular.link.on_fw = svc.on_chunk
    return svc


def _mac(key):
    from tokens.dkga04 import hmac_sha256

    def mac(sha8, offset, data):
        return hmac_sha256(key, b"fw" + sha8.encode() + struct.pack("<I", offset) + data)[:8]
    return mac


class _Capture:
    def __init__(self):
        self.out = b""

    def write(self, b):
        self.out += b


class OtaService:
    def __init__(self, app, updater):
        self.app = app
        self.updater = updater

    def status(self):
        return self.updater.status()

    # -- the command -------------------------------------------------------------------------------
    def offer(self, args):
        """`fw_offer` {"offer": base64 of the package's signed head} -> (code, detail)."""
        try:
            data = a2b_base64(args["offer"])
        except Exception:
            return "bad_package", {"why": "offer must be the package head in base64"}
        code, why = self.updater.offer(data)
        detail = {"why": why} if why else {}
        detail.update(self.updater.status())
        return code, detail

    # -- chunks ------------------------------------------------------------------------------------
    def on_chunk(self, payload):
        """b"FC SHA8 OFFSET BASE64 MACHEX": text with no CR or LF, because a modem in transparent mode
        watches the byte stream for "\r\nCLOSED\r\n" (and an image holds that very string)."""
        parts = bytes(payload).split(b" ")
        if len(parts) != 5 or parts[0] != b"FC":
            return "bad_chunk"
        if parts[1].decode() != (self.updater.rec.get("sha") or "")[:8]:
            return "other_image"
        try:
            off = int(parts[2])
            data = a2b_base64(parts[3])
            mac = unhexlify(parts[4])
        except Exception:
            return self.updater.chunk(self.updater.rec.get("off", 0), b"", None)   # counted as bad
        return self.updater.chunk(off, data, mac)

    # -- the job -----------------------------------------------------------------------------------
    def tick(self):
        app = self.app
        u = self.updater
        cell = app.cellular
        link_up = cell is not None and cell.link.up()
        if u.trial:
            if u.prove(self.health(link_up)) == "reset":
                app.board.reset()
            return
        st = u.state
        if st == "dl" and link_up:
            w = u.wanted()
            if w is not None:
                cell.link.mqtt.publish("meters/%s/fwreq" % cell.link.protocol.meter_id,
                                       ("%s %d %d" % w).encode(), 0)
        elif st == "ready" and u.switch(self.quiet(cell)):
            app.board.reset()

    def quiet_ms(self):
        """Nothing to do while no update is under way (an offer arriving makes it busy again)."""
        u = self.updater
        return 0 if u.trial or u.state != "idle" else 0x3FFFFFFF

    def quiet(self, cell):
        """A moment to reboot: the relay not changing (no move the contact did not confirm, due to be
        pulsed again), no commit open (a commit_many's journal on flash), no service request half-read,
        and what the meter owes the head-end (results, the `ota_ready` event) delivered. (A pulse and a
        commit run inside one job: this job never sees one half-way.)"""
        app = self.app
        if app.service.buf or app.prepaid.supply._retry_at is not None or app.store.journal_pending():
            return False
        if cell is not None and len(cell.link.uplink.queue):
            return False
        return True

    def health(self, link_up):
        """What a new image must show before it marks itself valid."""
        app = self.app
        meter_ok = app.meter.polls > 0 and app.meter.readings()["health"] == "ok"
        records_ok = not app.prepaid.ledger_lost
        try:
            app.store.load("prepaid")
        except Exception as e:
            records_ok = records_ok and type(e).__name__ == "StoreMissing"
        port = app.service
        real, cap = port.stream, _Capture()
        port.stream = cap
        try:
            port._handle(b'{"cmd":"ping","id":"ota-health"}')
        finally:
            port.stream = real
        port.requests -= 1
        service_ok = b'"ok": true' in cap.out or b'"ok":true' in cap.out
        # the update came over the link: the new image must bring it back up
        return {"metering": meter_ok, "records": records_ok, "service": service_ok, "link": link_up}
