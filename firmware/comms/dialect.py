"""What every SIMCom-style modem shares: start-up commands, SIM and registration queries, signal,
operator, network time and SMS in PDU mode, plus the parsers for their answers. `sim7600.py` and
`sim800.py` add their own TCP commands; `for_board(name)` picks one by board config `modem.dialect`."""
from comms.at import Cmd, CONNECT
from credit import civil

REG_HOME = 1
REG_ROAMING = 5


class Dialect:
    name = "generic"
    boot_ms = 5000  # power on -> first AT answered
    off_ms = 2000  # power held off during a power cycle
    reg_queries = ("AT+CREG?", "AT+CGREG?")

    time_cmd = "AT+CTZU=1"  # keep the modem clock on network time (NITZ)

    def init(self):
        # Verbose errors, PDU mode for SMS, new SMS signalled as +CMTI (stored, read by index).
        return [Cmd("ATE0"), Cmd("AT+CMEE=1"), Cmd("AT+CMGF=0"), Cmd("AT+CNMI=2,1,0,0,0", optional=True),
                Cmd(self.time_cmd, optional=True)]

    def net_ok(self, cmd):
        """Whether a finished command really succeeded (some report failure inside an OK)."""
        return cmd.ok

    def sim(self):
        return Cmd("AT+CPIN?", 5000)

    def csq(self):
        return Cmd("AT+CSQ")

    def cops(self):
        return Cmd("AT+COPS?", 10000)

    def cclk(self):
        return Cmd("AT+CCLK?")

    def sms_send(self, tpdu_len, pdu_hex):
        # Submitting takes a few seconds on a live network; a modem that hung after the prompt must
        # not hold the AT channel (and the link's recovery) for a minute. A text that timed out stays
        # in the outbox and is sent again.
        return Cmd("AT+CMGS=%d" % tpdu_len, 30000, payload=pdu_hex.encode())

    def sms_read(self, idx):
        return Cmd("AT+CMGR=%d" % idx, 10000)

    def sms_list(self):
        return Cmd("AT+CMGL=4", 20000)  # 4 = all messages, in PDU mode

    def sms_delete(self, idx):
        return Cmd("AT+CMGD=%d" % idx, 10000)

    def resume(self):
        return Cmd("ATO", 10000, CONNECT)


def sim_ready(cmd):
    return cmd.ok and cmd.find("+CPIN:") == "READY"


def parse_csq(cmd):
    """RSSI in dBm from +CSQ (0 -> -113 dBm, 31 -> -51 dBm), or None when unknown (99)."""
    v = cmd.find("+CSQ:")
    if not v:
        return None
    try:
        r = int(v.split(",")[0])
    except ValueError:
        return None
    if r < 0 or r > 31:
        return None
    return -113 + 2 * r


def parse_reg(cmd):
    """The registration stat from a +CxREG answer ("n,stat[,...]"), or 0 when absent."""
    for ln in cmd.lines:
        if ln[:1] == "+" and "REG:" in ln:
            parts = ln.split(":", 1)[1].split(",")
            try:
                return int(parts[1] if len(parts) > 1 else parts[0])
            except ValueError:
                return 0
    return 0


def urc_reg(line):
    """The stat of a +CREG/+CGREG/+CEREG URC line ("+CREG: stat[,lac,ci]"), or None."""
    try:
        return int(line.split(":", 1)[1].split(",")[0])
    except (ValueError, IndexError):
        return None


def parse_cops(cmd):
    v = cmd.find("+COPS:")
    if v and '"' in v:
        return v.split('"')[1]
    return None


def parse_cclk(text):
    """Unix seconds UTC from a modem time "yy/MM/dd,hh:mm:ss+zz" (zone in quarter hours), or None
    when it is malformed or implausible (a modem without network time reports its 1980/2000 epoch)."""
    text = text.strip().strip('"')
    try:
        date, tod = text.split(",")
        yy, mo, dd = [int(x) for x in date.split("/")]
        sign = 1
        k = tod.find("+")
        if k < 0:
            k = tod.find("-")
            sign = -1
        zone = 0
        if k >= 0:
            zone = sign * int(tod[k + 1:])
            tod = tod[:k]
        hh, mi, ss = [int(x) for x in tod.split(":")]
    except (ValueError, IndexError):
        return None
    if not (24 <= yy <= 99 and 1 <= mo <= 12 and 1 <= dd <= civil.days_in_month(2000 + yy, mo)
            and hh < 24 and mi < 60 and ss < 60 and -56 <= zone <= 56):
        return None
    # Local time = UTC + zone quarter hours, so UTC = local - zone.
    return civil.unix(2000 + yy, mo, dd, hh, mi, ss) - zone * 900


def for_board(name):
    if name == "sim800":
        from comms.sim800 import SIM800
        return SIM800()
    if name == "sim7600":
        from comms.sim7600 import SIM7600
        return SIM7600()
    raise ValueError("unknown modem dialect " + str(name))
