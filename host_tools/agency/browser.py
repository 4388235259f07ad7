"""Debian's Chromium driven by Playwright (never a browser download): the launch options the browser
tests and the screenshot script share."""
import os

from host_tools.errors import UsageError

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
INSTALL = "apt-get install -y chromium fonts-noto-core"
PHONE = {"width": 390, "height": 844}


def launch(playwright):
    if not os.path.exists(CHROMIUM):
        raise UsageError("Chromium is not installed at %s" % CHROMIUM, hint="run: " + INSTALL)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
