"""A PKCS#11 module and a logged-in session on one of its tokens, through PyKCS11: list tokens, make
one, import a secret key as a sensitive, non-extractable object, find keys, and HMAC-SHA-256 sign
inside the token. Every PKCS#11 failure becomes one line saying what to do."""
import threading

from host_tools.errors import DeviceError, UsageError

# Secret keys live in the token as sensitive, never extractable, only for signing (HMAC).
LOCKED_DOWN = ("sensitive", "never extractable", "sign only")


def _p11():
    import PyKCS11
    from PyKCS11 import constants
    return PyKCS11, constants


def _code(e):
    return getattr(e, "value", None)


def _explain(e, settings, doing):
    """A MeterkitError for a PyKCS11Error `e` raised while `doing`."""
    _, c = _p11()
    code = _code(e)
    where = settings.describe()
    if code == c.CKR_PIN_INCORRECT:
        return UsageError(f"wrong PIN for {where}", hint="check $METERKIT_HSM_PIN (or the SO PIN); "
                                                          "several wrong tries lock the token")
    if code == c.CKR_PIN_LOCKED:
        return UsageError(f"the PIN of {where} is locked after too many wrong tries",
                          hint="the security officer must reset it (softhsm2-util or the HSM's own tool)")
    if code == c.CKR_PIN_LEN_RANGE:
        return UsageError(f"the PIN has a length {where} does not accept", hint="SoftHSM takes 4..255 characters")
    if code == c.CKR_USER_PIN_NOT_INITIALIZED:
        return UsageError(f"{where} has no user PIN yet", hint="meterkit keys init sets one")
    if code in (c.CKR_TOKEN_NOT_PRESENT, c.CKR_DEVICE_REMOVED, c.CKR_SLOT_ID_INVALID):
        return DeviceError(f"{where} is not present", hint="check the HSM is connected and the slot is right")
    if code == c.CKR_ATTRIBUTE_VALUE_INVALID or code == c.CKR_TEMPLATE_INCONSISTENT:
        return DeviceError(f"{where} refused the key's attributes while {doing} ({e})",
                           hint="the module must hold HMAC keys as sensitive, non-extractable secrets")
    return DeviceError(f"PKCS#11 error while {doing} on {where}: {e}",
                       hint="see the module's own log (SoftHSM: syslog) or its vendor's error codes")


def _label(text):
    """A CK_UTF8CHAR[32] label as text: blank- or NUL-padded."""
    return text.rstrip(" \x00") if isinstance(text, str) else bytes(text).decode("utf-8", "replace").rstrip(" \x00")


class Module:
    """One loaded PKCS#11 library (closed with close(), or as a context manager)."""

    def __init__(self, settings):
        PyKCS11, _ = _p11()
        self.settings = settings
        try:
            self.lib = PyKCS11.PyKCS11Lib().load(settings.module)
        except PyKCS11.PyKCS11Error as e:
            raise UsageError(f"cannot load the PKCS#11 module {settings.module}: {e}",
                             hint="give the HSM's PKCS#11 library (--pkcs11-module or $METERKIT_PKCS11_MODULE); "
                                  "SoftHSM also needs a readable $SOFTHSM2_CONF") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.lib is not None:
            self.lib.unload()
            self.lib = None

    def tokens(self):
        """Every slot with its token: slot, label, initialized, user PIN set, maker, model, serial."""
        PyKCS11, c = _p11()
        out = []
        try:
            for slot in self.lib.getSlotList(tokenPresent=True):
                t = self.lib.getTokenInfo(slot)
                out.append({"slot": int(slot), "label": _label(t.label),
                            "initialized": bool(t.flags & c.CKF_TOKEN_INITIALIZED),
                            "user_pin": bool(t.flags & c.CKF_USER_PIN_INITIALIZED),
                            "manufacturer": _label(t.manufacturerID), "model": _label(t.model),
                            "serial": _label(t.serialNumber)})
        except PyKCS11.PyKCS11Error as e:
            raise _explain(e, self.settings, "listing tokens") from None
        return out

    def slot(self):
        """The slot of the configured token (by slot id, or by label)."""
        s = self.settings
        toks = self.tokens()
        if s.slot is not None:
            match = [t for t in toks if t["slot"] == s.slot]
            if not match:
                raise UsageError(f"no token in slot {s.slot} of {s.module}",
                                 hint="slots with a token: %s" % (", ".join(str(t["slot"]) for t in toks) or "none"))
            if s.token_given and match[0]["label"] != s.token:
                raise UsageError(f"slot {s.slot} holds token {match[0]['label']!r}, not {s.token!r}",
                                 hint="give the slot or the label that `meterkit keys list` shows")
            return s.slot
        match = [t for t in toks if t["initialized"] and t["label"] == s.token]
        if not match:
            have = ", ".join(repr(t["label"]) for t in toks if t["initialized"]) or "none"
            raise UsageError(f"no token labelled {s.token!r} in {s.module} (tokens: {have})",
                             hint="make one with `meterkit keys init`, or choose it with --token / $METERKIT_HSM_TOKEN")
        if len(match) > 1:
            raise UsageError(f"{len(match)} tokens are labelled {s.token!r}",
                             hint="choose one by slot (--slot or $METERKIT_HSM_SLOT)")
        return match[0]["slot"]

    def init_token(self, label, so_pin, user_pin):
        """Initialise a free slot's token as `label` with the SO PIN, then set the user PIN; its slot id."""
        PyKCS11, c = _p11()
        if len(label.encode()) > 32 or not label:
            raise UsageError(f"token label {label!r} must be 1..32 bytes", hint="e.g. meterkit")
        toks = self.tokens()
        if any(t["initialized"] and t["label"] == label for t in toks):
            raise UsageError(f"a token labelled {label!r} already exists in {self.settings.module}",
                             hint="its keys stay; use it, or give another --token label")
        free = [t for t in toks if not t["initialized"]]
        if not free:
            raise UsageError(f"no free slot in {self.settings.module} for a new token",
                             hint="a hardware HSM's partitions are made with its vendor's tool; "
                                  "then `meterkit keys import` into one")
        try:
            self.lib.initToken(free[0]["slot"], so_pin, label.ljust(32))
        except PyKCS11.PyKCS11Error as e:
            raise _explain(e, self.settings, "initialising the token") from None
        slot = [t for t in self.tokens() if t["initialized"] and t["label"] == label][0]["slot"]
        s = self.open(slot, so_pin, rw=True, so=True)
        try:
            s.raw.initPin(user_pin)
        except PyKCS11.PyKCS11Error as e:
            raise _explain(e, self.settings, "setting the user PIN") from None
        finally:
            s.close()
        return slot

    def open(self, slot, pin, rw=False, so=False):
        """A session on `slot`, logged in as the user (or the SO)."""
        PyKCS11, c = _p11()
        flags = c.CKF_SERIAL_SESSION | (c.CKF_RW_SESSION if rw else 0)
        try:
            raw = self.lib.openSession(slot, flags)
        except PyKCS11.PyKCS11Error as e:
            raise _explain(e, self.settings, "opening a session") from None
        try:
            raw.login(pin, c.CKU_SO if so else c.CKU_USER)
        except PyKCS11.PyKCS11Error as e:
            if _code(e) != c.CKR_USER_ALREADY_LOGGED_IN:
                raw.closeSession()
                raise _explain(e, self.settings, "logging in") from None
        return Session(raw, self.settings)


class Session:
    """A logged-in session: find, list and import secret keys, HMAC-SHA-256 inside the token. One
    operation at a time (PKCS#11 sessions are not for concurrent use), so calls take a lock."""

    def __init__(self, raw, settings):
        self.raw = raw
        self.settings = settings
        self.lock = threading.Lock()

    def close(self):
        # No C_Logout: the login belongs to the whole process (every session on the token), so a logout
        # here would end the other sessions' access; closing the process's last session ends it anyway.
        PyKCS11, _ = _p11()
        if self.raw is not None:
            try:
                self.raw.closeSession()
            except PyKCS11.PyKCS11Error:
                pass
            self.raw = None

    def find_secret(self, label):
        PyKCS11, c = _p11()
        with self.lock:
            try:
                found = self.raw.findObjects([(c.CKA_CLASS, c.CKO_SECRET_KEY), (c.CKA_LABEL, label)])
            except PyKCS11.PyKCS11Error as e:
                raise _explain(e, self.settings, "finding key %r" % label) from None
        if len(found) > 1:
            raise UsageError(f"{len(found)} secret keys are labelled {label!r} in {self.settings.describe()}",
                             hint="labels must be unique; remove the extra one with the HSM's own tool")
        return found[0] if found else None

    def secret_keys(self):
        """Every secret key: label, type, bits, and its protection attributes."""
        PyKCS11, c = _p11()
        out = []
        with self.lock:
            try:
                for h in self.raw.findObjects([(c.CKA_CLASS, c.CKO_SECRET_KEY)]):
                    label, ktype, size, sens, extr, sign, never = self.raw.getAttributeValue(
                        h, [c.CKA_LABEL, c.CKA_KEY_TYPE, c.CKA_VALUE_LEN, c.CKA_SENSITIVE, c.CKA_EXTRACTABLE,
                            c.CKA_SIGN, c.CKA_NEVER_EXTRACTABLE])
                    out.append({"label": label, "handle": h,
                                "type": c.CKK[ktype] if ktype in c.CKK else ktype,
                                "bits": 8 * size if size else None, "sensitive": bool(sens),
                                "extractable": bool(extr), "never_extractable": bool(never), "sign": bool(sign)})
            except PyKCS11.PyKCS11Error as e:
                raise _explain(e, self.settings, "listing keys") from None
        return out

    def import_secret(self, label, value):
        """Create a token object holding `value` as an HMAC key that cannot be read back out."""
        PyKCS11, c = _p11()
        template = [(c.CKA_CLASS, c.CKO_SECRET_KEY), (c.CKA_KEY_TYPE, c.CKK_GENERIC_SECRET),
                    (c.CKA_TOKEN, True), (c.CKA_PRIVATE, True), (c.CKA_LABEL, label),
                    (c.CKA_ID, label.encode()), (c.CKA_SENSITIVE, True), (c.CKA_EXTRACTABLE, False),
                    (c.CKA_MODIFIABLE, False), (c.CKA_SIGN, True), (c.CKA_VERIFY, False),
                    (c.CKA_ENCRYPT, False), (c.CKA_DECRYPT, False), (c.CKA_WRAP, False), (c.CKA_UNWRAP, False),
                    (c.CKA_DERIVE, False), (c.CKA_VALUE, bytes(value))]
        with self.lock:
            try:
                return self.raw.createObject(template)
            except PyKCS11.PyKCS11Error as e:
                raise _explain(e, self.settings, "importing key %r" % label) from None

    def destroy(self, handle):
        PyKCS11, _ = _p11()
        with self.lock:
            try:
                self.raw.destroyObject(handle)
            except PyKCS11.PyKCS11Error as e:
                raise _explain(e, self.settings, "removing a key") from None

    def read_value(self, handle):
        """The key's value if the token gives it out (it must not: the tests prove it does not)."""
        PyKCS11, c = _p11()
        with self.lock:
            try:
                v = self.raw.getAttributeValue(handle, [c.CKA_VALUE], allAsBinary=True)[0]
            except PyKCS11.PyKCS11Error:
                return None
        return bytes(v) if v else None

    def hmac_sha256(self, handle, data):
        """HMAC-SHA-256 of `data` computed inside the token (CKM_SHA256_HMAC sign)."""
        PyKCS11, c = _p11()
        with self.lock:
            try:
                return bytes(self.raw.sign(handle, data, PyKCS11.Mechanism(c.CKM_SHA256_HMAC, None)))
            except PyKCS11.PyKCS11Error as e:
                raise _explain(e, self.settings, "signing (HMAC-SHA-256)") from None
