"""The protobuf wire format as the OTLP encoders write it (otlp.py for spans, otlp_metrics.py for
metrics): varints, length-delimited fields, ``AnyValue`` and ``KeyValue`` attributes
(``opentelemetry/proto/common/v1/common.proto``), and the POST of a body to a collector.

Nothing here needs the OpenTelemetry SDK, so the metrics can be sent without it.
"""

from __future__ import annotations

import http.client
import struct
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

TIMEOUT_S = 10.0
FIXED64 = struct.Struct("<Q")
DOUBLE = struct.Struct("<d")
FIXED32 = struct.Struct("<I")

_SMALL = [bytes([n]) for n in range(128)]
_KEYS: dict[str, bytes] = {}  # an attribute key's field, written once (the keys are few)
_STRINGS: dict[str, bytes] = {}  # a string value's AnyValue field (model and deployment names repeat)
_REMEMBERED = 4096


def varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL[value]
    value &= 0xFFFFFFFFFFFFFFFF  # negative int64: two's complement, ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes, messages, packed repeated numbers)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def text(number: int, value: str) -> bytes:
    return field(number, value.encode("utf-8", "surrogatepass")) if value else b""


def any_value(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")  # bool_value = 2
    if isinstance(value, int):
        return b"\x18" + varint(value)  # int_value = 3
    if isinstance(value, float):
        return b"\x21" + DOUBLE.pack(value)  # double_value = 4
    if isinstance(value, str):
        return field(1, value.encode("utf-8", "surrogatepass"))  # string_value = 1
    if isinstance(value, Sequence):
        return field(5, b"".join(field(1, any_value(item)) for item in value))  # array_value = 5
    return field(1, str(value).encode("utf-8", "surrogatepass"))


def attributes(number: int, pairs: Mapping[str, Any] | None) -> bytes:
    """Field ``number`` repeated: one ``KeyValue`` (key = 1, value = 2) per pair."""
    if not pairs:
        return b""
    tag = varint(number << 3 | 2)
    parts = []
    for key, value in pairs.items():
        name = _KEYS.get(key)
        if name is None:
            name = field(1, key.encode("utf-8", "surrogatepass"))
            if len(_KEYS) < _REMEMBERED:
                _KEYS[key] = name
        if type(value) is str:
            encoded = _STRINGS.get(value)
            if encoded is None:
                encoded = field(2, any_value(value))
                if len(_STRINGS) < _REMEMBERED and len(value) <= 200:
                    _STRINGS[value] = encoded
        else:
            encoded = field(2, any_value(value))
        pair = name + encoded
        parts.append(tag + varint(len(pair)) + pair)
    return b"".join(parts)


class Collector:
    """One signal's URL at an OTLP/HTTP collector (``{endpoint}/v1/traces``, ``/v1/metrics``),
    posted to over one kept connection; one caller at a time."""

    def __init__(self, endpoint: str, signal: str) -> None:
        url = urlsplit(f"{endpoint.rstrip('/')}/v1/{signal}")
        self.https = url.scheme == "https"
        self.host = url.hostname or "localhost"
        self.port = url.port or (443 if self.https else 80)
        self.path = url.path
        self.url = url.geturl()
        self._connection: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> int:
        """The status the collector answered ``body`` with; OSError or HTTPException where none came
        (the connection is then closed, and the next post opens another)."""
        if self._connection is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._connection = kind(self.host, self.port, timeout=TIMEOUT_S)
        try:
            self._connection.request("POST", self.path, body, {"content-type": "application/x-protobuf"})
            response = self._connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        return response.status

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
