"""Assembling the prepaid core's configurable parts from its settings: at boot (from the record's
state) and again when set_config changes them (carrying the running state over). Loaded for that one
call, then dropped: it runs rarely and the heap is small."""
from credit.ledger import Ledger
from credit.policy import Policy
from credit.tariff import Schedule
from relay import settings_check
from metering import tamper

from prepaid.core import DEFAULTS


def build(p, cfg, state=None):
    """The settings completed by DEFAULTS and the parts they configure: (settings, schedule, ledger,
    policy, supply settings, tamper settings) for Prepaid `p`. At boot from the record's `state`; later
    (state None) carrying `p`'s running state over. Nothing running changes; ValueError names a bad value."""
    c = dict(DEFAULTS)
    if cfg:
        c.update(cfg)
    for k in ("commit_wh", "commit_s"):
        v = c[k]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 86400:
            raise ValueError("%s must be an integer 1..86400" % k)
    sch = Schedule(c["tariff"])
    lcfg = c["ledger"]
    if state is None:
        led_st, pol_st = p.ledger.state(), p.policy.state()
    else:
        led_st, pol_st = state.get("ledger"), state.get("policy")
        if p.ledger_lost and isinstance(lcfg, dict) and lcfg.get("opening_credit"):
            lcfg = dict(lcfg)
            lcfg["opening_credit"] = 0    # a lost ledger restarts at zero: the opening credit was given once
    led = Ledger(lcfg, sch, p.emit, led_st)
    pol = Policy(c["policy"], p.emit, pol_st)
    if state is None:                     # check the supply and tamper settings now, use them later
        settings_check().supply(c["supply"])
        tamper.check(c["tamper"])
    return c, sch, led, pol, c["supply"], c["tamper"]


def use(p, parts, keep_limit=True):
    """Put parts made by `build` in force in Prepaid `p` (set_config) and commit."""
    c, p.schedule, p.ledger, p.policy, supply_cfg, tamper_cfg = parts
    limit = p.supply.limit_w
    p.supply.configure(supply_cfg)
    if keep_limit:
        p.supply.limit_w = limit       # a limit set by an STS token stays until the utility sets one
    p.tamper.configure(tamper_cfg)
    p.cfg = c
    p.commit_wh = c["commit_wh"]
    p.commit_ms = c["commit_s"] * 1000
    p.poll_supply()
    p.commit()
