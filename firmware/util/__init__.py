"""What has no subsystem of its own, in one module (each module costs a module object on the heap):
loading a module for one call, the refusal an action raises, the check of one integer setting.

Loading for one call: code that is large and rarely run (token decoding, remote settings, service
commands, settings checks that run at boot) is imported for the call and dropped after it, so it costs
no heap the rest of the time. Written once, here."""
import gc
import sys


def unload(name):
    """Forget module `name` (and its package's reference to it) so its code can be collected."""
    if name in sys.modules:
        del sys.modules[name]
    i = name.rfind(".")
    if i > 0:
        parent = sys.modules.get(name[:i])
        if parent is not None and hasattr(parent, name[i + 1:]):
            delattr(parent, name[i + 1:])


def drop(prefix):
    """Forget `prefix` and every module under it (a package and what its code imported of it)."""
    dot = prefix + "."
    for name in [n for n in sys.modules if n.startswith(dot)]:
        unload(name)
    unload(prefix)
    gc.collect()


def once(module):
    """Module `module`, already forgotten: it goes with the caller's last reference (checks that run
    once at boot, the journal for one commit)."""
    m = __import__(module, None, None, ["_"])
    unload(module)
    return m


def load(module, attr):
    """`module.attr`, importing the module (it stays loaded until `drop`)."""
    return getattr(__import__(module, None, None, [attr]), attr)


def call(module, fn, *args, tree=None):
    """`module.fn(*args)`, with the module imported for this call only; `tree` (a package name) drops
    everything under it afterwards too (what the module imported to do its work)."""
    try:
        return load(module, fn)(*args)
    finally:
        drop(tree or module)



class Refused(ValueError):
    """An action asked with a value it cannot take: the text says which value and what is accepted.
    Nothing was changed. Caught by class, never by name."""


def need_int(cfg, key, lo, hi, default=None):
    """cfg[key] as an int in [lo, hi]; ValueError naming the key and the range otherwise."""
    v = cfg.get(key, default)
    if v is None or isinstance(v, bool) or not isinstance(v, int) or v < lo or v > hi:
        raise ValueError("%s must be an int in %d..%d (got %r)" % (key, lo, hi, v))
    return v
