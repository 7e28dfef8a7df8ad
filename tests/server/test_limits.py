"""What one client connection may send, and how long it may take: request heads are bounded
(431, 414) as they arrive, slow and idle connections are answered 408 or closed. Real sockets
against a gateway served as `modelgate serve` serves it."""

from __future__ import annotations

import resource
import socket
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from modelgate.config import ConfigError, parse_settings
from modelgate.http.request import HTTPRequest
from modelgate.schema.errors import ClientDisconnected
from tests.support import DEADLINE_S, RunningGateway, gateway_in_thread

REQUEST = b"GET /health HTTP/1.1\r\nHost: gateway\r\n"


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningGateway]:
    """The default limits."""
    with gateway_in_thread({}) as running:
        yield running


@pytest.fixture(scope="module")
def hasty() -> Iterator[RunningGateway]:
    """Short read deadlines, a long keep-alive."""
    with gateway_in_thread({"server": {"header_timeout": 1, "body_timeout": 1, "keepalive_timeout": 60}}) as running:
        yield running


class Client:
    """One connection to the gateway, read as the responses come (several may arrive in one read)."""

    def __init__(self, gateway: RunningGateway) -> None:
        host, port = gateway.base_url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=DEADLINE_S)
        self.sock.settimeout(DEADLINE_S)  # every read below waits at most this long for what it expects
        self.buffer = b""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self) -> bytes:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return chunk

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers, body (by its Content-Length)."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._read():
                raise AssertionError(f"the connection closed before a response; got {self.buffer!r}")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._read(), "the connection closed in the middle of a body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), headers, body

    def status(self) -> int:
        return self.response()[0]

    def closed(self) -> bool:
        """Whether the server closes the connection, sending nothing more, within the deadline."""
        try:
            return not self.buffer and self._read() == b""
        except ConnectionResetError:
            return True

    def refused(self, status: int, code: str) -> str:
        """Assert that the next answer is the refusal ``status`` with ``code`` and ends the
        connection; its message."""
        got, headers, body = self.response()
        assert got == status, body
        assert headers["connection"] == "close"
        error = orjson.loads(body)["error"]
        assert error["code"] == code
        assert self.closed()
        return str(error["message"])


def fields(count: int, size: int = 1) -> bytes:
    return b"".join(b"x-field-%d: %s\r\n" % (i, b"v" * size) for i in range(count))


def test_a_head_that_never_ends_is_refused_as_soon_as_it_passes_the_limit(gateway: RunningGateway) -> None:
    with Client(gateway) as client:
        client.send(REQUEST + b"x-big: " + b"a" * 200_000)  # no end of the headers, ever
        message = client.refused(431, "request_header_fields_too_large")
        assert "65536 bytes" in message


def test_a_64_mb_header_is_refused_without_being_read_whole_and_others_are_served(gateway: RunningGateway) -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with Client(gateway) as client:
        sent = 0

        def flood() -> None:
            nonlocal sent
            chunk = b"a" * (1 << 20)
            try:
                client.send(REQUEST + b"x-big: ")
                while sent < 64 << 20:
                    sent += client.sock.send(chunk)
                client.send(b"\r\n\r\n")
            except OSError:
                pass  # the server closed: it has stopped reading

        sender = threading.Thread(target=flood)
        sender.start()
        with Client(gateway) as other:
            other.send(REQUEST + b"\r\n")
            assert other.status() == 200
        client.refused(431, "request_header_fields_too_large")
        sender.join(DEADLINE_S)
    # The gateway (in this process) never held the header: far less than 64 MB more memory at the peak.
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 32, f"the peak memory grew by {grown_mb:.0f} MB"


def test_more_header_fields_than_the_limit_are_refused(gateway: RunningGateway) -> None:
    with Client(gateway) as client:
        client.send(REQUEST + fields(98) + b"\r\n")  # 100 with Host
        assert client.status() == 200
    with Client(gateway) as client:
        client.send(REQUEST + fields(100) + b"\r\n")
        assert "more than 100 header fields" in client.refused(431, "request_header_fields_too_large")


def test_a_header_line_over_the_line_limit_is_refused(gateway: RunningGateway) -> None:
    with Client(gateway) as client:
        client.send(REQUEST + b"x-token: " + b"t" * (16 * 1024 - 7) + b"\r\n\r\n")  # name and value: 16 KB
        assert client.status() == 200
    with Client(gateway) as client:
        client.send(REQUEST + b"x-token: " + b"t" * (16 * 1024 - 6) + b"\r\n\r\n")
        assert "'x-token' is over 16384 bytes" in client.refused(431, "request_header_fields_too_large")


def test_headers_over_the_total_in_one_write_are_refused(gateway: RunningGateway) -> None:
    with Client(gateway) as client:
        client.send(REQUEST + fields(5, 15 * 1024) + b"\r\n")  # each line allowed, 75 KB together
        client.refused(431, "request_header_fields_too_large")


def test_a_long_request_target_is_refused_with_414(gateway: RunningGateway) -> None:
    with Client(gateway) as client:
        client.send(b"GET /health?q=" + b"q" * 20_000 + b" HTTP/1.1\r\nHost: gateway\r\n\r\n")
        client.refused(414, "uri_too_long")


def test_slowloris_headers_are_answered_408(hasty: RunningGateway) -> None:
    with Client(hasty) as client:
        client.send(REQUEST)
        client.sock.settimeout(0.1)
        answer = b""
        # One more header line every 0.1 s (each read waits that long): activity does not extend the deadline.
        for i in range(int(DEADLINE_S / 0.1)):
            try:
                client.send(b"x-drip-%d: 1\r\n" % i)
                answer = client.sock.recv(65536)
                break
            except TimeoutError:
                continue
            except OSError:
                break
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b'"code":"request_timeout"' in answer


def test_a_request_cut_short_before_its_headers_end_is_answered_408(hasty: RunningGateway) -> None:
    with Client(hasty) as client:
        client.send(REQUEST)
        assert "did not arrive within 1 s" in client.refused(408, "request_timeout")


def test_connections_that_send_nothing_are_closed(hasty: RunningGateway) -> None:
    clients = [Client(hasty) for _ in range(50)]
    try:
        assert all(client.closed() for client in clients)
    finally:
        for client in clients:
            client.sock.close()


def test_the_header_deadline_of_a_kept_alive_connection_runs_from_the_next_requests_first_byte(
        hasty: RunningGateway) -> None:
    with Client(hasty) as client:
        client.send(REQUEST + b"\r\n")
        assert client.status() == 200
        client.send(REQUEST)  # the next request, never finished
        client.refused(408, "request_timeout")


def test_a_pipelined_request_that_never_finishes_its_headers_is_answered_408(hasty: RunningGateway) -> None:
    with Client(hasty) as client:
        client.send(REQUEST + b"\r\n" + REQUEST)  # the second begins inside the first's read
        assert client.status() == 200
        client.refused(408, "request_timeout")


def test_a_stalled_body_is_answered_408(hasty: RunningGateway) -> None:
    with Client(hasty) as client:
        client.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\ncontent-type: application/json\r\n"
                     b"content-length: 100\r\n\r\n{")
        assert "paused for more than 1 s" in client.refused(408, "request_timeout")
        # The gateway goes on serving.
    with Client(hasty) as client:
        client.send(REQUEST + b"\r\n")
        assert client.status() == 200


async def test_a_body_cut_short_is_answered_as_a_client_that_left_not_as_a_failure() -> None:
    """The app's error for a body that stopped coming is a GatewayError (answered to no one), not a
    cancellation that uvicorn would log as an exception of the app."""
    sent: list[dict[str, Any]] = [{"type": "http.request", "body": b"{", "more_body": True},
                                  {"type": "http.disconnect"}]
    messages = iter(sent)

    async def receive() -> dict[str, Any]:
        return next(messages)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    with pytest.raises(ClientDisconnected):
        await HTTPRequest(scope, receive).body()


def test_an_idle_kept_alive_connection_is_closed() -> None:
    with gateway_in_thread({"server": {"keepalive_timeout": 0.5}}) as running, Client(running) as client:
        client.send(REQUEST + b"\r\n")
        status, headers, _ = client.response()
        assert status == 200 and "connection" not in headers  # kept alive
        assert client.closed()


def test_limits_are_checked_at_start_up() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"server": {"header_timeout": 0, "max_headers": 0, "keepalive_timeout": float("nan")}},
                       {}, source="test config")
    text = str(caught.value)
    assert "server.header_timeout: must be a positive number of seconds" in text
    assert "server.max_headers: must be 1 or more" in text
    assert "server.keepalive_timeout: must be a positive number of seconds" in text


def test_pipelined_requests_are_held_to_the_same_limits(gateway: RunningGateway) -> None:
    with Client(gateway) as client:  # both requests in one write, so one read holds both heads
        client.send(REQUEST + b"\r\n" + REQUEST + b"\r\n")
        assert client.status() == 200
        assert client.status() == 200
    with Client(gateway) as client:
        client.send(REQUEST + b"\r\n" + REQUEST + fields(100) + b"\r\n")
        assert client.status() == 200
        client.refused(431, "request_header_fields_too_large")
    with Client(gateway) as client:
        client.send(REQUEST + b"\r\n" + REQUEST + b"x-token: " + b"t" * 20_000 + b"\r\n\r\n")
        assert client.status() == 200
        client.refused(431, "request_header_fields_too_large")
    with Client(gateway) as client:  # the second head spans two writes
        client.send(REQUEST + b"\r\n" + REQUEST + b"x-token: " + b"t" * 10_000)
        assert client.status() == 200
        client.send(b"t" * 10_000 + b"\r\n\r\n")
        client.refused(431, "request_header_fields_too_large")
