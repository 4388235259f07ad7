"""The supply grid: seeded voltage, frequency and outages, split-invariant."""
import json

import pytest

from host_tools.errors import UsageError
from host_tools.sim.world.grid import Grid
from test_sim_loads import merged

T0 = 1767225600
DAY = 86400


def test_stable_grid_is_one_nominal_segment():
    assert list(Grid.named("stable", 1).segments(T0, T0 + 365 * DAY)) == [(T0, 230.0, 50.0, True)]


@pytest.mark.parametrize("name", ["typical", "weak"])
def test_grid_is_deterministic_per_seed(name):
    a = list(Grid.named(name, 1).segments(T0, T0 + 2 * DAY))
    assert a == list(Grid.named(name, 1).segments(T0, T0 + 2 * DAY))
    assert a != list(Grid.named(name, 2).segments(T0, T0 + 2 * DAY))


def test_any_split_gives_the_same_supply():
    g = Grid.named("weak", 5)
    whole = list(g.segments(T0, T0 + 20 * DAY))
    cuts = [T0, T0 + 17.5, T0 + 3 * DAY + 299, T0 + 3 * DAY + 300, T0 + 9 * DAY + 12345.5, T0 + 20 * DAY]
    parts = [list(Grid.named("weak", 5).segments(a, b)) for a, b in zip(cuts, cuts[1:])]
    assert merged(parts) == whole


def test_typical_grid_varies_within_a_plausible_band_and_has_outages():
    segs = list(Grid.named("typical", 3).segments(T0, T0 + 365 * DAY))
    on = [s for s in segs if s[3]]
    assert min(s[1] for s in on) > 200 and max(s[1] for s in on) < 260
    assert 49.8 < min(s[2] for s in on) and max(s[2] for s in on) < 50.2
    outages = [s for s in segs if not s[3]]
    assert 1 <= len(outages) <= 30
    assert all(s[1] == 0.0 for s in outages)


def test_weak_grid_has_more_outages_and_lower_voltages_than_typical():
    def stats(name):
        segs = list(Grid.named(name, 4).segments(T0, T0 + 180 * DAY))
        return sum(1 for s in segs if not s[3]), min(s[1] for s in segs if s[3])
    weak_out, weak_min = stats("weak")
    typ_out, typ_min = stats("typical")
    assert weak_out > typ_out and weak_min < typ_min


def test_outage_ends_with_supply_back_on():
    segs = list(Grid.named("weak", 6).segments(T0, T0 + 60 * DAY))
    for a, b in zip(segs, segs[1:]):
        if not a[3]:
            assert b[3]


def test_bad_step_and_unknown_name_are_usage_errors(tmp_path):
    with pytest.raises(UsageError):
        Grid.from_json({"step_s": 7, "v_sigma_pct": 1}, 0)
    with pytest.raises(UsageError):
        Grid.named("nuclear", 0)
    p = tmp_path / "g.json"
    p.write_text(json.dumps({"name": "g", "v_sigma_pct": 0.5, "step_s": 600}))
    assert list(Grid.from_json(p, 1).segments(T0, T0 + DAY))[0][0] == T0
