"""The display's quiet minutes played by the board: between two jobs the meter hands the LCD the frames
its ticks would draw and sleeps. What the household sees must not change: the same frames at the same
instants as a meter that wakes every display period to draw them, with key presses in between."""
from host_tools.sim.esp32.runner import SimMeter
from host_tools.sim.world.world import DEFAULT_EPOCH

PRESSES = {125: "NEXT", 126: "NEXT", 250: "1", 251: "2", 262: "BACK", 263: "BACK", 400: "NEXT"}


def _watch(lcd_plays, seconds=9 * 60):
    # the simulated year's metering period; a clock 23 s past the minute, so the minute turns inside a
    # quiet stretch between two metering polls
    m = SimMeter(seed=4, afe="ideal", profile="household", lcd_plays=lcd_plays, epoch=DEFAULT_EPOCH + 23,
                 settings={"meter_period_s": 60})
    try:
        seen = []
        for s in range(1, seconds + 1):
            if s in PRESSES:
                m.press(PRESSES[s])
            m.run_until(s * 1000)
            seen.append((s, tuple(m.display_lines)))
        st = m.request("status")
        return seen, st["loop_ticks"]
    finally:
        m.close()


def test_planned_frames_are_the_frames_the_ticks_draw():
    played, wakes_played = _watch(True)
    drawn, wakes_drawn = _watch(False)
    diff = [(a, b) for a, b in zip(played, drawn) if a != b]
    assert not diff, "first differences (second, lines) played vs drawn: %r" % diff[:3]
    shown = {lines for _, lines in played}
    assert len(shown) >= 8, "the rotation, the clock and the keys should show many frames: %r" % shown
    # the point of it: the meter sleeps through its quiet minutes
    assert wakes_played * 3 < wakes_drawn, (wakes_played, wakes_drawn)
