"""The whole chain as a story for `make demo`: a household meter with a modem runs out of credit, its
relay opens, the utility vends a remote top-up at the head-end, the token travels over the broker and
the simulated cellular link, the relay closes, and the head-end gets the meter's result. The customer
then asks for the balance by SMS and gets the answer by SMS. `run_chain()` returns a summary dict."""
import time

from host_tools.sim.scenarios.chain import Chain
from host_tools.sim.modem.smsc import SMSC

# 0.60 MRU of credit at 5 MRU/kWh (120 Wh): a household uses it up within the first simulated hours.
CHAIN_SETTINGS = {"meter_period_s": 5, "language": "fr",
                  "prepaid": {"ledger": {"opening_credit": 60, "emergency_amount": 0}}}
TOPUP_MRU = 20
CUSTOMER = "+22236000001"


def _mru(minor):
    return "%d,%02d MRU" % (minor // 100, minor % 100) if minor >= 0 else "-" + _mru(-minor)


def _clock(ch):
    s = int(ch.now_s)
    return "t+%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60)


def run_chain(live=True, seed=11, broker="amqtt", workdir=None, max_hours=12):
    """Tell the story (printed as it goes when live); returns what happened as a flat-ish dict."""
    wall0 = time.monotonic()
    out = {"ok": False}

    def say(text):
        if live:
            print(text, flush=True)

    smsc = SMSC()
    say("\n== The whole chain: head-end -> broker -> cellular -> meter ==")
    with Chain(workdir=workdir, seed=seed, broker=broker, settings=CHAIN_SETTINGS, profile="household",
               smsc=smsc) as ch:
        m = ch.meter
        c = ch.credit()
        out.update(meter_id=ch.meter_id, broker=broker, opening_credit=c["credit"])
        say("[%s] meter %s is online over its simulated modem (%s broker); credit %s"
            % (_clock(ch), ch.meter_id, broker, _mru(c["credit"])))

        # 1. the household uses its credit up
        opened = ch.run(max_hours * 3600, until=lambda: not m.world.relay_closed, step_s=30, paced=False)
        c = ch.credit()
        out.update(relay_opened=opened, relay_opened_at_s=round(ch.now_s), credit_at_cut=c["credit"],
                   reasons_at_cut=c["reasons"])
        if not opened:
            say("[%s] the credit did not run out within %d simulated hours" % (_clock(ch), max_hours))
            return _finish(out, wall0)
        say("[%s] credit ran out (%s): the relay opened, reasons %s" % (_clock(ch), _mru(c["credit"]), c["reasons"]))

        # 2. the utility vends a remote top-up; the head-end delivers it over MQTT
        v = ch.vend(amount=TOPUP_MRU)
        t_vend = ch.now_s
        out.update(token=v["token"], msg_id=v["msg_id"], topup_minor=TOPUP_MRU * 100)
        say("[%s] head-end vends %d MRU: STS token %s, queued as %s" % (_clock(ch), TOPUP_MRU, v["token"], v["msg_id"]))
        base = c["topups"]
        landed = ch.run(600, until=lambda: ch.credit()["topups"] >= base + TOPUP_MRU * 100)
        c = ch.credit()
        out.update(landed=landed, latency_s=round(ch.now_s - t_vend, 2), credit_after=c["credit"])
        if not landed:
            say("[%s] the top-up did not arrive" % _clock(ch))
            return _finish(out, wall0)
        say("[%s] token arrived over the cellular link %.2f s after the vend: credit now %s"
            % (_clock(ch), ch.now_s - t_vend, _mru(c["credit"])))

        # 3. the supply comes back (at once, or when the customer presses the reconnect key)
        if not ch.run(60, until=lambda: m.world.relay_closed, step_s=1, paced=False) and c.get("awaiting_key"):
            say("[%s] the meter waits for the customer: RECONNECT pressed" % _clock(ch))
            m.press("RECONNECT")
            ch.run(60, until=lambda: m.world.relay_closed, step_s=1, paced=False)
        out.update(relay_closed_again=m.world.relay_closed, relay_closed_at_s=round(ch.now_s))
        say("[%s] relay %s" % (_clock(ch), "closed: the lights are back on" if m.world.relay_closed
                                else "still open (%s)" % ch.credit()["reasons"]))

        # 4. the head-end hears the result
        ch.run(300, until=lambda: ch.message(v["msg_id"])["state"] == "done")
        msg = ch.message(v["msg_id"])
        out.update(headend_result=msg["code"], headend_attempts=msg["attempts"])
        say("[%s] head-end: result %r for %s (%s)" % (_clock(ch), msg["code"], v["msg_id"], msg["detail"]))

        # 5. SMS: the receipt goes to the household's registered number (texts wait for the modem's
        #    next escape from data mode), and the customer can ask for the balance by text.
        def receipts():
            return [s.text for s in smsc.sent if s.to == CUSTOMER]
        ch.run(1300, until=receipts, step_s=5, paced=False)
        got = receipts()
        out["sms_receipt"] = got[0] if got else None
        say("[%s] SMS to the customer %s: %s" % (_clock(ch), CUSTOMER, got[0] if got else "(no receipt)"))
        n0 = len(smsc.sent)
        smsc.deliver(CUSTOMER, "SOLDE")
        say("[%s] the customer texts SOLDE from %s" % (_clock(ch), CUSTOMER))
        ch.run(1300, until=lambda: len(smsc.sent) > n0, step_s=5, paced=False)
        answer = [s.text for s in smsc.sent[n0:] if s.to == CUSTOMER]
        out["sms_balance_answer"] = answer[0] if answer else None
        say("[%s] meter answers by SMS: %s" % (_clock(ch), answer[0] if answer else "(nothing)"))
        out["ok"] = bool(landed and m.world.relay_closed and msg["code"] == "accepted" and got)
        out["virtual_seconds"] = round(ch.now_s)
    return _finish(out, wall0)


def _finish(out, wall0):
    out["wall_seconds"] = round(time.monotonic() - wall0, 2)
    return out


if __name__ == "__main__":
    import json
    print(json.dumps(run_chain(), indent=1, ensure_ascii=False))
