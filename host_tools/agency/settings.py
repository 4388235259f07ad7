"""One settings object for the agency, read from options, then the environment (METERKIT_AGENCY_*),
then defaults. Money is in minor units (1/100 of the currency unit) everywhere."""
import dataclasses
import os
import secrets
import time


@dataclasses.dataclass
class Tariff:
    """What a customer is charged, for the consumption page's split: rising blocks of monthly energy
    (upper bound in Wh, None for the last; price in minor units per kWh) and a standing charge a month."""
    blocks: tuple = ((100_000, 5_90), (300_000, 10_10), (None, 14_30))
    standing_minor_per_month: int = 200_00

    def split(self, month_wh):
        """[(label, wh, cost_minor)] for one month's energy, then the standing charge."""
        out, low = [], 0
        for upper, price in self.blocks:
            top = month_wh if upper is None else min(month_wh, upper)
            wh = max(0, top - low)
            label = "%d-%s kWh" % (low // 1000, "" if upper is None else upper // 1000)
            out.append((label, wh, (wh * price + 500) // 1000))
            if upper is None or month_wh <= upper:
                low = month_wh
                break
            low = upper
        return out


@dataclasses.dataclass
class Settings:
    currency: str = "MRU"
    minor_per_major: int = 100
    min_amount_minor: int = 100            # 1.00 MRU: "any amount from the configured minimum"
    max_amount_minor: int = 18_000         # the largest STS currency amount is 182 MRU
    secret: str = dataclasses.field(default_factory=lambda: secrets.token_hex(16))
    otp_ttl_s: int = 300
    otp_max_attempts: int = 5
    otp_per_address_per_hour: int = 5
    otp_per_ip_per_hour: int = 20
    signin_failures_per_15min: int = 5
    session_ttl_s: int = 12 * 3600
    silent_after_s: int = 3 * 3600         # a meter with no uplink for this long raises an alarm
    payment_poll_after_s: float = 30.0     # no callback after this long: ask the provider
    payment_stuck_after_s: float = 900.0   # paid but not credited after this long: alarm
    callback_base: str = "http://127.0.0.1:8080"
    tariff: Tariff = dataclasses.field(default_factory=Tariff)
    clock: object = time.time
    secure_cookies: bool = False

    @classmethod
    def from_env(cls, **over):
        env = os.environ
        s = cls(**{k: v for k, v in over.items() if v is not None})
        if "METERKIT_AGENCY_SECRET" in env and "secret" not in over:
            s.secret = env["METERKIT_AGENCY_SECRET"]
        if "METERKIT_AGENCY_MIN_MINOR" in env and "min_amount_minor" not in over:
            s.min_amount_minor = int(env["METERKIT_AGENCY_MIN_MINOR"])
        return s

    def money(self, minor):
        """Minor units as text, e.g. 1234 -> '12.34'."""
        sign = "-" if minor < 0 else ""
        minor = abs(int(minor))
        return "%s%d.%02d" % (sign, minor // self.minor_per_major, minor % self.minor_per_major)

    def parse_money(self, text):
        """'12', '12.5', '12,50' -> minor units (int); ValueError with a reason otherwise."""
        t = (text or "").strip().replace(",", ".")
        if not t:
            raise ValueError("empty")
        whole, _, frac = t.partition(".")
        if not whole.isdigit() and whole != "" or not (frac == "" or frac.isdigit()) or len(frac) > 2:
            raise ValueError("not an amount")
        return int(whole or "0") * self.minor_per_major + int((frac + "00")[:2])
