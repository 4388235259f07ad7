"""`meterkit agency scenario` with provider faults (late, doubled, reordered, missing callbacks) and 30 %
link loss on the meters: every purchase credited exactly once, none lost, none doubled."""
import json
import subprocess
import sys

import pytest

from host_tools.agency import scenario


@pytest.mark.long
def test_scenario_with_provider_faults_credits_every_purchase_exactly_once():
    # speed 150: the head-end's retries, the agency's polls and the provider's delays 150 times shorter than
    # production (the outcome does not depend on it; 300 passes too): 17 s of wall clock instead of 38 s at 50.
    r = scenario.run(customers=30, seed=3, provider_faults=0.5, drop=0.3, speed=150.0, concurrency=8)
    assert r["customer_errors"] == 0, r
    assert r["purchases"] == 30 and r["paid"] == 30, r
    assert r["duplicates"] == 0 and r["lost"] == 0, r
    assert r["credited_once"] == 30, r
    assert sum(r["provider_fault_counts"].values()) > 0 and r["redeliveries"] > 0, "no faults were exercised: %r" % r
    assert r["p95_pay_to_credit_s"] is not None


def test_scenario_cli_prints_one_json_object_and_refuses_bad_input():
    out = subprocess.run([sys.executable, "-m", "host_tools.cli", "agency", "scenario", "--customers", "5",
                          "--seed", "2", "--speed", "150", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rep = json.loads(out.stdout)
    for k in ("purchases", "paid", "credited_once", "duplicates", "lost", "refunded", "p95_pay_to_credit_s", "seed"):
        assert k in rep, k
    assert rep["purchases"] == 5 and rep["duplicates"] == 0 and rep["lost"] == 0 and rep["seed"] == 2
    bad = subprocess.run([sys.executable, "-m", "host_tools.cli", "agency", "scenario", "--customers", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--customers must be" in bad.stderr and "Traceback" not in bad.stderr
