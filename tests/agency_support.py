"""Helpers for the agency's tests: sign a customer or an operator in over HTTP, read form tokens, and a
settable clock."""
import re
import time

import httpx

from host_tools.agency.stack import customer_phone

TOKENS = re.compile(r'name="(csrf|request_key)" value="([^"]+)"')


class Clock:
    def __init__(self):
        self.t = time.time()

    def __call__(self):
        return self.t


def tokens(html):
    return dict(TOKENS.findall(html))


def last_code(stack, phone):
    msgs = stack.gateways.sms_to(phone)
    assert msgs, "no SMS reached %s (gateway has %r)" % (phone, stack.gateways.sms[-3:])
    return re.search(r"\b(\d{6})\b", msgs[-1]).group(1)


def customer_client(stack, i=0):
    """An httpx client signed in as customer i (phone customer_phone(i))."""
    c = httpx.Client(base_url=stack.url, timeout=20.0)
    phone = customer_phone(i)
    r = c.post("/signin", data={"phone": phone})
    assert r.status_code == 303, (r.status_code, r.text[:300])
    r = c.post("/signin/code", data={"phone": phone, "code": last_code(stack, phone)})
    assert r.status_code == 303 and r.headers["location"] == "/home", (r.status_code, r.text[:300])
    return c


def operator_client(stack, user="admin", password="admin-demo-pass"):
    c = httpx.Client(base_url=stack.url, timeout=20.0)
    r = c.post("/op/signin", data={"username": user, "password": password})
    assert r.status_code == 303, (r.status_code, r.text[:300])
    return c


def csrf(client, path):
    r = client.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return tokens(r.text)["csrf"]


def buy(client, amount="12.50", meter=None, key=None):
    """Submit the purchase form; returns (response, form data)."""
    f = tokens(client.get("/buy").text)
    data = {"csrf": f["csrf"], "request_key": key or f["request_key"], "amount": amount}
    if meter:
        data["meter"] = meter
    return client.post("/buy", data=data), data


def approve(url, decision="approve"):
    r = httpx.post(url, data={"decision": decision}, timeout=20.0)
    assert r.status_code == 303, (r.status_code, r.text[:200])
    return r.headers["location"]


def wait_for(fn, timeout=20.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)
