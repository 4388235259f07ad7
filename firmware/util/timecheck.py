"""The one bound on a clock set from outside the meter (a service request, a signed command, the
network's time): Unix seconds within 2020..2100. Earlier is a reset clock or a forged one."""

TIME_MIN = 1577836800        # 2020-01-01
TIME_MAX = 4102444800        # 2100-01-01


def plausible(t):
    return isinstance(t, int) and not isinstance(t, bool) and TIME_MIN <= t <= TIME_MAX
