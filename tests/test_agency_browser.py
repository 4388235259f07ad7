"""The agency in a real browser (Debian's Chromium through Playwright) against the demo world: a meter
running the real firmware under MicroPython, its modem simulated at AT level and bridged to a broker, the
head-end, the simulated payment provider, gateways and SMTP. A customer signs in with the SMS code, buys
credit and sees the meter credited (checked on the firmware's own ledger) and the receipt (SMS and
e-mail); pages at phone size; Arabic right to left; an operator assigns and closes the customer's fault
ticket and the customer gets the SMS. Screenshots of every page on failure go to build/agency-browser/."""
import os
import re

import pytest

from agency_support import wait_for
from host_tools.agency import browser
from host_tools.agency.stack import customer_phone
from host_tools.paths import BUILD

SHOTS = BUILD / "agency-browser"
PHONE = customer_phone(0)            # the customer of the real-firmware meter


@pytest.fixture(scope="module")
def world():
    if not os.path.exists(browser.CHROMIUM):
        pytest.fail("Chromium is not installed (%s): run `%s`" % (browser.CHROMIUM, browser.INSTALL))
    from host_tools.agency.demo import DemoWorld
    with DemoWorld(fake_meters=1, history=True) as w:
        yield w


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = browser.launch(p)
        yield b
        b.close()


@pytest.fixture
def pages(chromium, request):
    made = []
    failed_before = request.session.testsfailed

    def new(**kw):
        ctx = chromium.new_context(**kw)
        page = ctx.new_page()
        page.set_default_timeout(20000)
        made.append(page)
        return page
    yield new
    if request.session.testsfailed > failed_before:      # the call's report is logged before teardown
        SHOTS.mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(made):
            try:
                p.screenshot(path=str(SHOTS / ("%s-%d.png" % (request.node.name, i))), full_page=True)
            except Exception:
                pass
    for p in made:
        p.context.close()


def _sign_in(world, page):
    page.goto(world.url + "/signin")
    page.get_by_label("Numéro de téléphone").fill(PHONE)
    n = len(world.stack.gateways.sms_to(PHONE))
    page.get_by_role("button", name="Recevoir un code par SMS").click()
    page.wait_for_url(re.compile(r".*/signin/code.*"))
    msgs = world.stack.gateways.sms_to(PHONE)
    assert len(msgs) > n, "no sign-in code was texted"
    code = re.search(r"\b(\d{6})\b", msgs[-1]).group(1)
    page.get_by_label("Code reçu par SMS").fill(code)
    page.keyboard.press("Enter")                     # the form works from the keyboard
    page.wait_for_url(world.url + "/home")


def _ledger_topups(world):
    with world.lock:                                 # the driver thread steps the firmware meter
        return world.chain.credit()["topups"]


def test_customer_buys_credit_and_the_firmware_meter_is_credited(world, pages):
    page = pages(viewport=browser.PHONE, is_mobile=True, has_touch=True)
    _sign_in(world, page)
    assert page.locator("#credit").is_visible()
    # phone first: nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth") <= browser.PHONE["width"]
    # every visible field has a label
    unlabelled = page.evaluate("""[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).length""")
    assert unlabelled == 0
    before = _ledger_topups(world)
    page.get_by_role("link", name="Acheter du crédit").first.click()
    page.get_by_label("Montant (MRU)").fill("20")
    page.get_by_role("button", name="Payer").click()
    page.wait_for_url(re.compile(r".*/pay/MM\d+"))
    page.locator("#approve").click()                 # the customer approves on the provider's page
    page.wait_for_url(re.compile(r".*/purchases/\d+$"))
    pid = int(page.url.rsplit("/", 1)[1])
    page.wait_for_selector('#purchase[data-state="credited"]', timeout=90000)
    assert "crédité" in page.locator("#state").inner_text()
    token = page.locator("#token").inner_text().strip()
    assert re.fullmatch(r"\d{20}", token), token
    assert page.locator("#meter-credit").is_visible()
    # the meter's own ledger took exactly this purchase, once
    after = _ledger_topups(world)
    assert after - before == 2000, (before, after)
    # the receipt: a page, an SMS and an e-mail (this customer chose SMS and e-mail)
    page.get_by_role("link", name="Reçu", exact=True).click()
    assert token in page.locator("#receipt").inner_text()
    ref = "AG%08d" % pid
    # texts and mails go out after the state they report is committed: wait for them, briefly
    wait_for(lambda: any(token in s for s in world.stack.gateways.sms_to(PHONE)), what="the token texted")
    wait_for(lambda: any(ref in s for s in world.stack.gateways.sms_to(PHONE)), what="an SMS receipt")
    wait_for(lambda: any(ref in m.get_content() for m in world.stack.smtp.to("client1@example.org")),
             what="an e-mail receipt")


def test_arabic_pages_render_right_to_left(world, pages):
    page = pages(viewport=browser.PHONE, is_mobile=True)
    _sign_in(world, page)
    page.get_by_role("button", name="العربية").click()
    page.wait_for_load_state()
    try:
        assert page.evaluate("document.documentElement.dir") == "rtl"
        assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
        assert "الرصيد" in page.locator("main").inner_text()
        # the menu starts at the right edge
        first = page.locator("nav.tabs a").first.bounding_box()
        assert first["x"] > browser.PHONE["width"] / 2, first
        assert page.evaluate("document.documentElement.scrollWidth") <= browser.PHONE["width"]
    finally:
        page.get_by_role("button", name="Français").click()


def test_operator_assigns_and_closes_the_customers_ticket_and_the_customer_is_texted(world, pages):
    cust = pages(viewport=browser.PHONE, is_mobile=True)
    _sign_in(world, cust)
    cust.get_by_role("link", name="Signaler une panne").click()
    cust.get_by_label("Catégorie").select_option("no_power")
    cust.get_by_label("Description").fill("Plus de courant dans la cuisine")
    cust.get_by_role("button", name="Envoyer").click()
    cust.wait_for_url(re.compile(r".*/tickets/\d+$"))
    tid = int(cust.url.rsplit("/", 1)[1])
    op = pages(viewport={"width": 1280, "height": 800})
    op.goto(world.url + "/op/signin")
    op.get_by_label("Utilisateur").fill("agent")
    op.get_by_label("Mot de passe").fill("agent-demo-pass")
    op.get_by_role("button", name="Se connecter").click()
    op.wait_for_url(world.url + "/op/fleet")
    op.get_by_role("link", name="Tickets").click()
    op.get_by_role("link", name="#%d" % tid, exact=True).click()
    n = len(world.stack.gateways.sms_to(PHONE))
    op.get_by_label("Assigner à").select_option("agent")
    op.get_by_label("État", exact=True).select_option("in_progress")
    op.get_by_role("button", name="Enregistrer").click()
    assert op.locator("#tstate").inner_text() == "in_progress"
    op.get_by_label("État", exact=True).select_option("closed")
    op.get_by_role("button", name="Enregistrer").click()
    assert op.locator("#tstate").inner_text() == "closed"
    sms = world.stack.gateways.sms_to(PHONE)[n:]
    assert any("#%d" % tid in s and "en cours" in s for s in sms), sms
    assert any("#%d" % tid in s and "fermé" in s for s in sms), sms
    cust.reload()
    assert "fermé" in cust.locator("#tstate").inner_text()
