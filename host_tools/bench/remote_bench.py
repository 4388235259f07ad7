"""Benchmark: 1,000 remote top-ups through head-end, broker and the simulated cellular link while 30 % of
them meet a network fault (TCP drop, coverage loss, modem hang or reboot, broker restart). Counts
duplicates and losses on the meter's own ledger and the simulated delivery latency (vend to credit)."""
from host_tools.sim.scenario import remote_topups

COUNT = 1000
DROP = 0.3
SEED = 1


def _progress(done, total):
    if done % 100 == 0:
        print("   remote top-ups: %d/%d" % (done, total), flush=True)


def run():
    rep = remote_topups(count=COUNT, drop=DROP, seed=SEED, progress=_progress)
    return {
        "remote_topups": rep["requested"],
        "remote_topups_credited_once": rep["credited_once"],
        "remote_topups_duplicates": rep["duplicates"],
        "remote_topups_lost": rep["lost"],
        "remote_topups_results_received": rep["results_received"],
        "remote_topups_faults_injected": rep["faults_injected"],
        "remote_topup_latency_p50_s": rep["latency_p50_s"],
        "remote_topup_latency_p95_s": rep["latency_p95_s"],
        "remote_topups_wall_s": rep["wall_seconds"],
    }
