"""The service-port client every host tool shares (calibrate, provision, monitor): JSON lines over
pyserial, exactly as to a board on USB."""
import json
import time

import serial

from host_tools.errors import DeviceError


class ServiceClient:
    def __init__(self, port, baudrate=115200, timeout=5.0):
        from host_tools.device.ports import reason, resolve
        port = resolve(port)
        self.port = port
        self.timeout = timeout
        try:
            self.ser = serial.Serial(port, baudrate=baudrate, timeout=0.1)
        except (serial.SerialException, OSError) as e:
            raise DeviceError("cannot open %s: %s" % (port, reason(e)),
                              hint="list the ports with `meterkit devs`; a simulated meter prints its own "
                                   "(meterkit sim start --json)") from None
        self._id = 0
        self._buf = b""

    def close(self):
        self.ser.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, cmd, timeout=None, **args):
        """Send one request, return its reply dict; raise DeviceError on silence or an error reply."""
        self._id += 1
        rid = self._id
        args.update(id=rid, cmd=cmd)
        try:
            self.ser.write(json.dumps(args).encode() + b"\n")
        except (serial.SerialException, OSError) as e:
            raise DeviceError("write to %s failed: %s" % (self.port, _reason(e))) from None
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            line = self._readline(deadline)
            if line is None:
                break
            try:
                obj = json.loads(line)
            except ValueError:
                continue  # noise or a banner: keep looking for our reply
            if isinstance(obj, dict) and obj.get("id") == rid:
                if not obj.get("ok"):
                    raise DeviceError("meter refused %r: %s" % (cmd, obj.get("error")),
                                      hint="see the meter's service protocol in docs/service.md")
                return obj
        raise DeviceError("no reply from %s to %r within %.1f s" % (self.port, cmd, timeout or self.timeout),
                          hint="is the meter running and is this its service port?")

    def _readline(self, deadline):
        while b"\n" not in self._buf:
            if time.monotonic() >= deadline:
                return None
            try:
                # One byte (waiting at most the port's 0.1 s timeout), then whatever else has arrived:
                # read(4096) would wait out the whole timeout on every reply shorter than 4 KB.
                chunk = self.ser.read(1)
                if chunk and self.ser.in_waiting:
                    chunk += self.ser.read(self.ser.in_waiting)
            except (serial.SerialException, OSError) as e:
                raise DeviceError("read from %s failed: %s" % (self.port, _reason(e))) from None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line


def _reason(e):
    from host_tools.device.ports import reason
    return reason(e)
