"""A seeded sample of every fuzz target (host_tools/fuzz/; `make bench-long` runs 10^5 inputs per target):
no exception may escape and every invariant must hold. Plus the inputs the fuzzing found, each as a
regression test of its fix."""
import json

import pytest

from host_tools.fuzz import harness, make, quiet_gc

SAMPLE = {"service": 800, "keypad": 100, "sms": 500, "mqtt": 400, "headend_ingest": 300, "headend_csv": 300,
          "agency_csv": 800, "cli": 30}


@pytest.fixture(scope="module", autouse=True)
def _no_full_collections():
    undo = quiet_gc()
    yield
    undo()


@pytest.mark.parametrize("name", sorted(SAMPLE))
def test_fuzz_sample_has_no_escape_and_no_violation(name, tmp_path):
    t = make(name, tmp_path)
    s = harness.run(t, SAMPLE[name], seed=19, guided=0.2, reset_every=500, folder=tmp_path / "failures")
    first = "\n".join("%s: %s (%s)" % f for f in s["failures"][:3])
    assert s["escapes"] == 0 and s["violations"] == 0, "%s: %d escapes, %d violations; first:\n%s" % (
        name, s["escapes"], s["violations"], first)
    assert s["inputs"] == SAMPLE[name]
    assert len(s["outcomes"]) > 1, "%s: every input ended the same way (%s): the fuzz reaches nothing" % (
        name, s["outcomes"])


def test_a_violation_is_saved_with_its_seed_and_step(tmp_path):
    class Broken:
        name = "broken"

        def seeds(self):
            return [1]

        def generate(self, rng):
            return rng.randrange(10)

        def mutate(self, rng, x):
            return x + 1

        def run(self, x):
            if x == 3:
                raise harness.Violation("three is refused")
            if x == 4:
                raise KeyError("four")
            return "ok"
    s = harness.run(Broken(), 200, seed=5, folder=tmp_path)
    assert s["violations"] and s["escapes"], s
    saved = [json.loads(p.read_text()) for p in (tmp_path / "broken").iterdir()]
    kinds = {(d["input"], d["kind"]) for d in saved}
    assert kinds == {(3, "violation"), (4, "escape")}, kinds
    assert all(d["seed"] == 5 and isinstance(d["step"], int) for d in saved)


# -- what the fuzzing found ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def service(tmp_path_factory):
    return make("service", tmp_path_factory.mktemp("svc"))


@pytest.mark.parametrize("req", [{"cmd": {"a": 1}, "id": 1}, {"cmd": ["ping"], "id": 1}])
def test_a_command_that_is_an_object_or_list_gets_an_error_reply(service, req):
    # was: TypeError unhashable type escaping ServicePort.poll (a job failure; 32 in a row reset the meter)
    assert service.run({"state": "locked", "req": req}) == "other:refused"


@pytest.mark.parametrize("req", [{"cmd": "events", "since": "0", "id": 3}, {"cmd": "events", "since": None}])
def test_events_since_must_be_an_integer(service, req):
    # was: "TypeError: '>' not supported between instances of 'int' and 'str'" as the reply
    r = service.meters["locked"].request(req)
    assert r["ok"] is False and "since must be an event sequence number" in r["error"], r


def test_key_check_with_a_list_as_key_is_refused(service):
    # was: "TypeError: unhashable type: 'list'"
    r = service.meters["locked"].request({"cmd": "key_check", "key": ["a", None], "challenge": 1, "id": {"a": 1}})
    assert r["ok"] is False and r["error"].startswith("ProvisionError: key must be one of"), r


@pytest.mark.parametrize("reg", [4.0, "4", None, [4]])
def test_raw_write_with_a_register_that_is_not_an_integer_is_refused(service, reg):
    # was (10^5 bench, seed 19, step 31767): "TypeError: unsupported operand type(s) for &: 'float' and
    # 'int'" as the reply: 4.0 == 4 passed the writable-register check and reached the SPI frame
    assert service.run({"state": "locked_auth", "req": {"cmd": "raw_write", "reg": reg, "value": 0, "id": 22}}) \
        == "raw_write:refused"
    r = service.meters["locked"].request({"cmd": "raw_write", "reg": reg, "value": 0, "id": 23})
    assert r["ok"] is False and "register address must be an integer" in r["error"], r


def test_the_harness_starts_a_meter_again_when_a_rekey_replaced_its_service_key(service):
    # the 10^5 bench's 49 'escapes' (seed 19, from step 73,812): an authorised rekey among the inputs
    # gave the meter another service key, and the harness's next session was refused, correctly
    from host_tools.fuzz.meter import provision_request
    m = service.meters["locked"]
    assert service.run({"state": "locked_auth", "req": {"cmd": "ping", "id": 1}}) == "ping:ok"
    r = m.request(dict(provision_request(), cmd="provision", rekey=True, krn=2, service_key="0123456789abcdef" * 4, id=2))
    assert r["ok"], r
    m.request({"cmd": "auth_end", "id": 3})
    assert m.service_key_changed()
    assert service.run({"state": "locked_auth", "req": {"cmd": "ping", "id": 4}}) == "ping:ok"
    assert not m.service_key_changed() and m.authorised()


@pytest.mark.parametrize("inner", [
    {"t": "event", "seq": 667, "ts": 1767571200, "kind": "\ud800", "data": {}},
    {"t": "event", "seq": 668, "ts": 1767571200, "kind": "boot", "data": {"\udfff": ["x", {"a": "\ud801"}]}},
])
def test_a_signed_uplink_with_a_lone_surrogate_is_rejected_as_malformed(tmp_path, inner):
    # was (10^5 bench, seed 19, step 28,819): UnicodeEncodeError from the event log's INSERT inside
    # the uplink's transaction (JSON's "\ud800" is valid JSON but no UTF-8 text)
    t = make("headend_ingest", tmp_path)
    assert t.run({"m": 0, "kind": "deep_junk", "inner": inner, "ds": 1}) == "rejected:malformed"


def test_a_token_sms_from_an_alphanumeric_sender_is_not_answered(tmp_path):
    # was: ValueError from the reply's PDU address ("invalid literal for int() with base 16")
    t = make("sms", tmp_path)
    sms = t.meters["online"].app.cellular.link.sms
    dropped = sms.stats["dropped"]
    assert sms.handle("BANK", t.tokens[0]) == "token"
    assert sms.handle("é", "SOLDE") == "refused"
    assert sms.stats["dropped"] == dropped + 1     # the reply to BANK (the customer's top-up receipt is queued)


@pytest.mark.parametrize("text, words", [
    ("name,phone,meters\nA,+22236\r000001,M\n", "is not CSV"),
    ("name,phone,meters,arrears_minor\nA,+22236000001,{m},99999999999999999999999\n", "arrears_minor must be 0.."),
])
def test_customer_import_refuses_what_escaped_before(tmp_path, text, words):
    from host_tools.agency import registry
    t = make("agency_csv", tmp_path)
    with pytest.raises(registry.RegistryError) as e:
        registry.import_csv(t.store, text.format(m=t.meters[0]), 0)
    assert words in str(e.value)


@pytest.mark.parametrize("argv, words", [
    (["agency", "import", "{bad}", "--db", "{db}"], "is not UTF-8 text"),
    (["agency", "operator", "ana", "--db", "{db}"], "no password given"),
    (["headend", "backup", "{dir}", "--db", "{db}"], "is a folder"),
    (["headend", "ota", "status", "99999999999999999999", "--db", "{db}"], "is not a campaign number"),
    # found by the 10^5 bench run (fuzz_all_bench, seed 19): a FileExistsError and a ValueError traceback
    (["headend", "broker-config", "--out", "{bad}", "--db", "{db}"], "is a file, not a folder"),
    (["ota", "keygen", "--json", "--out", "", "--force"], "names no file"),
    (["ota", "keygen", "--out", "{dir}"], "is a folder"),
    (["headend", "backup", "", "--db", "{db}"], "file name is empty"),   # was IsADirectoryError (cwd)
])
def test_cli_ends_in_a_usage_error_where_it_printed_a_traceback(tmp_path, capsys, argv, words):
    t = make("cli", tmp_path)
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(b"name,phone,meters\nJos\xe9,+22236000001,x\n")
    argv = [a.format(bad=bad, db=t.values[0], dir=tmp_path) for a in argv]
    out = t.run({"argv": argv})
    err = capsys.readouterr()
    assert out.endswith(":2"), (out, err)
    assert words in t.last_output, "the usage error does not say %r: %r" % (words, t.last_output)
