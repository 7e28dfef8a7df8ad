"""The ``server:`` section: what one client connection may send, and how long it may take.

The defaults are those of the common servers: a request line or header line of at most 16 KB
(Node's whole-head default; nginx's and Apache's are 8 KB), at most 100 header fields (Apache's
and gunicorn's), 64 KB of request line and headers together, the headers within 10 s, no
gap of more than 60 s in a request body (nginx's ``client_body_timeout``) and 75 s of idle
keep-alive (nginx's ``keepalive_timeout``, longer than the 60 s of the common load balancers, so
that they close first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from modelgate.config.fields import Check, Key, at_least


def _seconds(problem: str) -> Check:
    return lambda value: None if math.isfinite(value) and value > 0 else problem


@dataclass(slots=True, kw_only=True)
class ServerSettings:
    """Limits of the HTTP server (server/protocol.py)."""

    # Bytes of a request's line and header fields together; beyond them the answer is 431.
    max_header_bytes: Annotated[int, Key("a number of bytes", at_least(
        1024, "must be 1024 bytes or more"))] = 64 * 1024
    # Header fields in one request; beyond them the answer is 431.
    max_headers: Annotated[int, Key("a number", at_least(1, "must be 1 or more"))] = 100
    # Bytes of one header field (name and value), and of the request target (beyond it: 414).
    max_line_bytes: Annotated[int, Key("a number of bytes", at_least(
        256, "must be 256 bytes or more"))] = 16 * 1024
    # Seconds a client has to send a request's headers, from the connection's start or from the
    # request's first byte; then the answer is 408 (a connection that sent nothing is closed).
    header_timeout: Annotated[float, Key("seconds as a number", _seconds(
        "must be a positive number of seconds"))] = 10.0
    # Seconds a request body may pause between two reads; then the answer is 408.
    body_timeout: Annotated[float, Key("seconds as a number", _seconds(
        "must be a positive number of seconds"))] = 60.0
    # Seconds an idle keep-alive connection stays open after a response.
    keepalive_timeout: Annotated[float, Key("seconds as a number", _seconds(
        "must be a positive number of seconds"))] = 75.0
