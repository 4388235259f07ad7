"""The agency's parts wired together over one head-end store: registry, payments, arrears, notifications,
tickets, alarms, and the worker that reconciles payments and raises alarms in the background."""
import logging
import threading

from host_tools.agency import schema, statements
from host_tools.agency.alarms import Alarms
from host_tools.agency.arrears import ArrearsBook
from host_tools.agency.notify import Notifier
from host_tools.agency.payments.lifecycle import Payments
from host_tools.agency.tickets import Tickets

log = logging.getLogger("agency")


class Agency:
    def __init__(self, store, settings, provider, keystore, sms=None, email=None, whatsapp=None):
        self.store = store
        self.settings = settings
        schema.migrate(store)
        self.notifier = Notifier(store, settings, sms=sms, email=email, whatsapp=whatsapp)
        self.alarms = Alarms(store, settings)
        self.tickets = Tickets(store, settings, self.notifier)
        self.payments = Payments(store, settings, provider, keystore, self.notifier, self.alarms)
        self.arrears = ArrearsBook(store, settings)
        self._stop = threading.Event()
        self._thread = None

    def work_once(self):
        """One round of background work; returns what the payment reconciler did."""
        did = self.payments.reconcile()
        did["arrears"] = self.arrears.sync()
        did["alarms"] = self.alarms.scan()
        did["statements"] = statements.send_due(self.store, self.settings, self.notifier)
        return did

    def start_worker(self, period_s=0.5):
        def loop():
            while not self._stop.is_set():
                try:
                    self.work_once()
                except Exception:   # one bad round must not stop the worker
                    log.exception("agency worker round failed")
                self._stop.wait(period_s)
        self._thread = threading.Thread(target=loop, name="agency-worker", daemon=True)
        self._thread.start()
        return self

    def stop_worker(self):
        self._stop.set()
        if self._thread:
            self._thread.join(10)
