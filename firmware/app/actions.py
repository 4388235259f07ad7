"""What every action of the meter acts on, held for the meter's run: the prepaid core, the clock, the
event log, the store, the settings (and their file), the token lockouts of remote senders, and who to
tell when the settings change. The actions themselves (app/actionpath.py: one function each, with its
checks and its event) are loaded for each call only: they are rare and the heap is small.

Adapters (service/commands.py, comms/cellular.py, ui/wiring.py) call `actions.run(name, *args, by)`."""
from util import lazy


class Actions:
    def __init__(self, prepaid, clock, emit, store, settings, settings_path):
        self.prepaid = prepaid
        self.clock = clock
        self.emit = emit
        self.store = store
        self.settings = settings
        self.settings_path = settings_path
        self.token_locks = {}           # token lockouts per remote source, in RAM (tokens/apply.py)
        self.settings_listeners = []    # fn(settings) after set_config changed them

    def run(self, name, *args):
        """Action `name` of app/actionpath.py with `args` (the last is `by`, the channel)."""
        return lazy.call("app.actionpath", name, self, *args)
