"""Seeded mutators shared by the targets: bytes, text (with Arabic, French and control characters),
JSON values (structure-aware: a field replaced by junk of another type, dropped, added, nested) and
argument lists. Everything takes a `random.Random`, so a run is reproducible from its seed."""

JUNK = [None, True, False, 0, -1, 1, 7, 255, 2 ** 31 - 1, 2 ** 31, 2 ** 53, 2 ** 63, 2 ** 80, -2 ** 70, 1.5, -0.0,
        1e308, "", " ", "x", "0", "1", "-1", "true", "null", "1e999", "NaN", "0x10", "2026-13-40", "\u0000", "\n",
        "é" * 40, "رصيد", "x" * 300, "9" * 20, "٣٤٥", "１２３", "\u202e", "\ud800", [], [1], ["a", None], {}, {"a": 1},
        {"": {"b": [1, {}]}}, [[[[[]]]]]]

TEXT_ALPHABET = ("0123456789 abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ?.!-=+*#,;:/\\\"'"
                 "éèàçùÉ€£¤§ رصيد؟٠١٢٣٤٥٦٧٨٩\t\r\n\x00\x1b\x7f\u200f\u202e\ufeff")


def rbytes(rng, lo=0, hi=40):
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(lo, hi)))


def mutate_bytes(rng, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.getrandbits(8)
        elif op == 1 and b:
            i = rng.randrange(len(b))
            del b[i:i + rng.randint(1, 8)]
        elif op == 2:
            i = rng.randrange(len(b) + 1)
            b[i:i] = rbytes(rng, 1, 8)
        elif op == 3 and b:
            i = rng.randrange(len(b))
            b[i:i] = b[i:i + rng.randint(1, 16)]
        elif op == 4 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        else:
            b = b[:rng.randrange(len(b) + 1)]
    return bytes(b)


def rtext(rng, lo=0, hi=30, alphabet=TEXT_ALPHABET):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def mutate_text(rng, s):
    s = list(s)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(5)
        if op == 0 and s:
            s[rng.randrange(len(s))] = rng.choice(TEXT_ALPHABET)
        elif op == 1 and s:
            i = rng.randrange(len(s))
            del s[i:i + rng.randint(1, 4)]
        elif op == 2:
            i = rng.randrange(len(s) + 1)
            s[i:i] = list(rtext(rng, 1, 5))
        elif op == 3 and s:
            i = rng.randrange(len(s))
            s[i:i] = s[i:i + rng.randint(1, 10)]
        else:
            s = list("".join(s).swapcase()) if rng.random() < 0.5 else s[:rng.randrange(len(s) + 1)]
    return "".join(s)


def junk(rng):
    return rng.choice(JUNK)


def mutate_value(rng, v, depth=0):
    """A JSON value like `v` but wrong somewhere: a field of another type, dropped or added, a number
    just off a bound, a string mutated."""
    r = rng.random()
    if isinstance(v, dict) and v and r < 0.7 and depth < 4:
        v = dict(v)
        k = rng.choice(list(v))
        op = rng.randrange(4)
        if op == 0:
            del v[k]
        elif op == 1:
            v[k] = junk(rng)
        elif op == 2:
            v[rtext(rng, 0, 8) if rng.random() < 0.5 else k + "_"] = junk(rng)
        else:
            v[k] = mutate_value(rng, v[k], depth + 1)
        return v
    if isinstance(v, list) and v and r < 0.6 and depth < 4:
        v = list(v)
        i = rng.randrange(len(v))
        if rng.random() < 0.5:
            v[i] = mutate_value(rng, v[i], depth + 1)
        else:
            del v[i]
        return v
    if isinstance(v, bool):
        return rng.choice([not v, 0, 1, "true", None])
    if isinstance(v, int):
        return rng.choice([v + 1, v - 1, -v, v * 1000, 2 ** 31, -1, 0, str(v), float(v), None])
    if isinstance(v, str) and r < 0.8:
        return mutate_text(rng, v)
    return junk(rng)


def mutate_argv(rng, argv, words=()):
    """An argument list like `argv`: an argument dropped, duplicated, swapped, replaced by junk or by
    one of `words` (option names and values the parser knows)."""
    a = list(argv)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        if op == 0 and a:
            del a[rng.randrange(len(a))]
        elif op == 1 and a:
            i = rng.randrange(len(a))
            a.insert(i, a[i])
        elif op == 2 and len(a) > 1:
            i, j = rng.randrange(len(a)), rng.randrange(len(a))
            a[i], a[j] = a[j], a[i]
        elif op == 3 and words:
            a.insert(rng.randrange(len(a) + 1), rng.choice(words))
        elif op == 4 and a:
            a[rng.randrange(len(a))] = str(rng.choice(["", "-", "--", "-1", "0", "1e9", "x" * 200, "é", "/nonexistent/x",
                                                     "/dev/null", "--json", "-h", "nan", "99999999999999999999",
                                                     "auto", ":", "sim:", "a=b"]))
        elif a:
            i = rng.randrange(len(a))
            a[i] = mutate_text(rng, a[i]).replace("\x00", "")
    return a
