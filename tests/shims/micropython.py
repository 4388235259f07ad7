"""CPython stand-in for MicroPython's `micropython` module, so firmware modules import under pytest."""


def const(x):
    return x


def native(f):
    return f


def viper(f):
    return f


def mem_info(*a):
    pass


kbd_intr_calls = []   # what firmware asked of kbd_intr (a test checks the console was locked)


def kbd_intr(c):
    kbd_intr_calls.append(c)
