"""SLIP framing (RFC 1055) as the ESP32 ROM bootloader uses it: frames between 0xC0 bytes."""
_END, _ESC, _ESC_END, _ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD


def encode(payload):
    out = bytearray([_END])
    for b in payload:
        if b == _END:
            out += bytes([_ESC, _ESC_END])
        elif b == _ESC:
            out += bytes([_ESC, _ESC_ESC])
        else:
            out.append(b)
    out.append(_END)
    return bytes(out)


class Decoder:
    """Feed bytes as they arrive; get back the complete frames. Bytes outside a frame are dropped,
    as the ROM drops line noise between packets."""

    def __init__(self):
        self._buf = None  # None: between frames
        self._esc = False

    def feed(self, data):
        frames = []
        for b in data:
            if self._buf is None:
                if b == _END:
                    self._buf = bytearray()
                continue
            if self._esc:
                self._esc = False
                self._buf.append(_END if b == _ESC_END else _ESC if b == _ESC_ESC else b)
            elif b == _ESC:
                self._esc = True
            elif b == _END:
                if self._buf:
                    frames.append(bytes(self._buf))
                    self._buf = None
                # an empty frame is a back-to-back END: treat it as the start of the next frame
            else:
                self._buf.append(b)
        return frames
