"""Pictures for the README: the customer's home page at phone size (French and Arabic) and the operator's
fleet page, taken in Debian's Chromium from the demo world after one purchase.
Run: .venv/bin/python -m host_tools.agency.screenshots [OUT_DIR] (default docs/img)."""
import re
import sys
from pathlib import Path

from host_tools.agency import browser
from host_tools.agency.demo import DemoWorld
from host_tools.agency.stack import customer_phone
from host_tools.paths import ROOT


def take(out):
    from playwright.sync_api import sync_playwright
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    phone = customer_phone(0)
    with DemoWorld(fake_meters=5) as w, sync_playwright() as p:
        b = browser.launch(p)
        page = b.new_context(viewport=browser.PHONE, device_scale_factor=2, is_mobile=True).new_page()
        page.goto(w.url + "/signin")
        page.fill("#phone", phone)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(".*/signin/code.*"))
        page.fill("#code", re.search(r"\b(\d{6})\b", w.stack.gateways.sms_to(phone)[-1]).group(1))
        page.click("button[type=submit]")
        page.wait_for_url(w.url + "/home")
        page.goto(w.url + "/buy")
        page.fill("#amount", "50")
        page.click("#pay")
        page.click("#approve")
        page.wait_for_selector('#purchase[data-state="credited"]', timeout=90000)
        page.wait_for_timeout(16000)            # the meter's next reading shows the new credit
        page.goto(w.url + "/home")
        page.screenshot(path=str(out / "agency-home.png"), full_page=True)
        page.click("button[name=lang][value=ar]")
        page.wait_for_load_state()
        page.screenshot(path=str(out / "agency-home-ar.png"), full_page=True)
        page.click("button[name=lang][value=fr]")
        op = b.new_context(viewport={"width": 1280, "height": 720}).new_page()
        op.goto(w.url + "/op/signin")
        op.fill("#username", "agent")
        op.fill("#password", "agent-demo-pass")
        op.click("button.primary")
        op.wait_for_url(w.url + "/op/fleet")
        op.screenshot(path=str(out / "agency-fleet.png"), full_page=True)
        b.close()
    return [str(out / n) for n in ("agency-home.png", "agency-home-ar.png", "agency-fleet.png")]


if __name__ == "__main__":
    print("\n".join(take(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "img")))
