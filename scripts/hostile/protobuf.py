# Hand-written protobuf for the hostile OTLP bodies.
def ld(field, payload):
    """A length-delimited field: its tag, the varint length, the bytes."""
    n = len(payload); v = b''
    while True:
        b = n & 0x7f; n >>= 7
        if n: v += bytes([b | 0x80])
        else: v += bytes([b]); break
    return bytes([(field << 3) | 2]) + v + payload
