"""Household load profiles: seeded, split-invariant, with a base load; solar exports."""
import json
import math

import pytest

from host_tools.errors import UsageError
from host_tools.sim.world.loads import LoadProfile, signed_pf

T0 = 1767225600            # 2026-01-01 00:00 UTC
DAY = 86400


def merged(parts):
    """Concatenate segment lists from adjacent windows, dropping a split point that changes nothing."""
    out = []
    for part in parts:
        for seg in part:
            if out and seg[1:] == out[-1][1:]:
                continue
            out.append(seg)
    return out


@pytest.mark.parametrize("name", ["household", "small", "solar"])
def test_same_seed_same_load_other_seed_other_load(name):
    a = list(LoadProfile.named(name, 1).segments(T0, T0 + 3 * DAY))
    b = list(LoadProfile.named(name, 1).segments(T0, T0 + 3 * DAY))
    c = list(LoadProfile.named(name, 2).segments(T0, T0 + 3 * DAY))
    assert a == b
    assert a != c


@pytest.mark.parametrize("name", ["household", "solar"])
def test_any_split_of_a_window_gives_the_same_load(name):
    lp = LoadProfile.named(name, 11)
    whole = list(lp.segments(T0 + 1000, T0 + 4 * DAY))
    cuts = [T0 + 1000, T0 + 1000 + 0.5, T0 + 7 * 3600 + 13.25, T0 + DAY, T0 + DAY + 1, T0 + 2 * DAY + 40000,
            T0 + 4 * DAY]
    fresh = LoadProfile.named(name, 11)           # a new object: no shared cache
    parts = [list(fresh.segments(a, b)) for a, b in zip(cuts, cuts[1:])]
    assert merged(parts) == whole


def test_segments_start_at_t0_and_are_ordered_inside_the_window():
    segs = list(LoadProfile.named("household", 3).segments(T0 + 0.25, T0 + DAY))
    assert segs[0][0] == T0 + 0.25
    times = [s[0] for s in segs]
    assert times == sorted(times) and times[-1] < T0 + DAY
    assert len(set(times)) == len(times)


@pytest.mark.parametrize("name", ["household", "small"])
def test_standby_base_load_is_always_at_least_30_watts(name):
    for seed in range(3):
        segs = list(LoadProfile.named(name, seed).segments(T0, T0 + 40 * DAY))
        assert min(w for _, w, _ in segs) >= 30


def test_solar_exports_around_midday_and_imports_at_night():
    lp = LoadProfile.named("solar", 4)
    segs = list(lp.segments(T0 + 150 * DAY, T0 + 157 * DAY))   # early June
    assert min(w for _, w, _ in segs) < -500
    night = [w for t, w, _ in segs if ((t + 3600) % DAY) < 4 * 3600]
    assert night and min(night) > 0


def test_household_uses_more_in_summer_afternoons_than_spring_ones():
    """Air conditioning and fans are summer appliances."""
    lp = LoadProfile.named("household", 8)

    def mean_watts(day0, days):
        total = 0.0
        for d in range(day0, day0 + days):
            a, b = T0 + d * DAY + 11 * 3600, T0 + d * DAY + 21 * 3600
            segs = list(lp.segments(a, b))
            for (t, w, _), nxt in zip(segs, segs[1:] + [(b, 0, 0)]):
                total += w * (nxt[0] - t)
        return total / (days * 10 * 3600)
    assert mean_watts(190, 28) > 1.5 * mean_watts(95, 28)


def test_weekend_has_more_daytime_use_than_weekdays():
    lp = LoadProfile.named("household", 2)
    day_kwh = {True: [], False: []}
    for d in range(0, 140):
        a, b = T0 + d * DAY + 9 * 3600 - 3600, T0 + d * DAY + 15 * 3600 - 3600   # 09-15 local (UTC+1)
        segs = list(lp.segments(a, b))
        e = sum(w * (nxt[0] - t) for (t, w, _), nxt in zip(segs, segs[1:] + [(b, 0, 0)]))
        weekend = (d + 3) % 7 in (5, 6)               # 2026-01-01 is a Thursday
        day_kwh[weekend].append(e)
    mean = {k: sum(v) / len(v) for k, v in day_kwh.items()}
    assert mean[True] > 1.3 * mean[False]


def test_constant_profile_is_one_segment():
    segs = list(LoadProfile.named("constant", 0).segments(T0, T0 + 365 * DAY))
    assert segs == [(T0, 2300.0, 1.0)]


def test_pf_sign_says_inductive_or_capacitive():
    assert signed_pf(100, 0) == 1.0
    assert signed_pf(100, 100) == pytest.approx(math.sqrt(0.5))
    assert signed_pf(100, -100) == pytest.approx(-math.sqrt(0.5))
    lp = LoadProfile.from_json({"kind": "constant", "watts": 100, "pf": -0.8}, 0)
    assert list(lp.segments(0, 10))[0][2] == pytest.approx(-0.8)


def test_household_pf_is_lagging_with_motors():
    segs = list(LoadProfile.named("household", 1).segments(T0, T0 + DAY))
    assert all(0 < pf <= 1 for _, _, pf in segs)
    assert min(pf for _, _, pf in segs) < 0.95


def test_json_file_and_errors(tmp_path):
    obj = {"kind": "appliances", "name": "t", "base": {"watts": 40, "pf": 1.0},
           "appliances": [{"name": "k", "type": "events", "watts": 1000, "pf": 1.0, "duration_min": 5,
                           "windows": [{"from_h": 7, "to_h": 8, "count": 1}]}]}
    p = tmp_path / "l.json"
    p.write_text(json.dumps(obj))
    segs = list(LoadProfile.from_json(p, 1).segments(0, DAY))
    assert [w for _, w, _ in segs] == [40.0, 1040.0, 40.0]
    with pytest.raises(UsageError):
        LoadProfile.from_json({"kind": "appliances", "appliances": [{"type": "toaster"}]}, 0)
    with pytest.raises(UsageError):
        LoadProfile.named("mansion", 0)
    with pytest.raises(UsageError):
        LoadProfile.from_json(tmp_path / "missing.json", 0)
