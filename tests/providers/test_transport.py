"""The upstream HTTP client against scripted servers on real sockets: framing, reuse, timeouts, TLS."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from modelgate.providers.transport import (
    ConnectError,
    HTTPClient,
    ProtocolError,
    ReadTimeout,
    Timeout,
)
from tests.support import refused_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Script:
    """A server that runs ``handler`` for every request on every connection it accepts."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_client = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                await self.handler(reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client.set()
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[tuple[Script, str]]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler, tls: ssl.SSLContext | None = None) -> tuple[Script, str]:
        script = Script(handler)
        server = await asyncio.start_server(script.serve, "127.0.0.1", 0, ssl=tls)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return script, f"{'https' if tls else 'http'}://127.0.0.1:{port}/v1/chat?x=1"

    yield start
    for server in servers:
        server.close()


def answer(body: bytes, *headers: str) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        extra = "".join(f"{h}\r\n" for h in headers)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body)
        await writer.drain()
    return handler


QUICK = Timeout(connect=2, read=2)


async def post(client: HTTPClient, url: str, limits: Timeout = QUICK) -> tuple[int, bytes]:
    async with client.post(url, data=b'{"a":1}', headers={"Authorization": "Bearer k"}, timeout=limits) as response:
        return response.status, await response.read()


async def test_request_on_the_wire_and_connection_reused(serve: Callable[..., Awaitable[tuple[Script, str]]]) -> None:
    script, url = await serve(answer(b'{"ok":true}'))
    client = HTTPClient()
    assert await post(client, url) == (200, b'{"ok":true}')
    assert await post(client, url) == (200, b'{"ok":true}')
    await client.close()
    assert script.connections == 1
    head, body = script.requests[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat?x=1 HTTP/1.1"
    assert b"Authorization: Bearer k" in lines and b"Content-Length: 7" in lines
    assert any(line.startswith(b"Host: 127.0.0.1:") for line in lines)
    assert body == b'{"a":1}'


async def test_chunked_body_streams_as_it_arrives(serve: Callable[..., Awaitable[tuple[Script, str]]]) -> None:
    seen: list[bytes] = []
    more = asyncio.Event()  # set each time the client got a chunk
    paced = [True]  # the first answer only; the second one goes out whole

    async def chunks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n")
        for part in (b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            # The next part only once the client has this one: a client that gathered the body
            # until its end would get nothing, and the server would give up.
            if paced[0]:
                await asyncio.wait_for(more.wait(), 10)
                more.clear()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    script, url = await serve(chunks)
    client = HTTPClient()
    async with client.post(url, data=b"{}", headers={}, timeout=Timeout(read=30)) as response:
        assert response.headers.get("Content-Type") == "text/event-stream"
        async for chunk in response.iter_chunks():
            seen.append(chunk)
            more.set()
    paced[0] = False
    assert b"".join(seen) == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
    assert len(seen) == 3  # delivered as sent, not gathered until the end
    assert await post(client, url) is not None  # the connection went back to the pool
    assert script.connections == 1
    await client.close()


async def test_body_delimited_by_close(serve: Callable[..., Awaitable[tuple[Script, str]]]) -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    _, url = await serve(until_close)
    client = HTTPClient()
    assert await post(client, url) == (200, b"all of it")
    await client.close()


async def test_repeated_headers_are_joined_and_names_ignore_case(
    serve: Callable[..., Awaitable[tuple[Script, str]]],
) -> None:
    _, url = await serve(answer(b"{}", "Retry-After: 7", "X-Tag: a", "x-tag: b"))
    client = HTTPClient()
    async with client.post(url, data=b"{}", headers={}, timeout=Timeout()) as response:
        assert response.headers.get("retry-after") == "7"
        assert response.headers.get("X-TAG") == "a, b"
        await response.read()
    await client.close()


async def test_cut_mid_body_is_a_protocol_error(serve: Callable[..., Awaitable[tuple[Script, str]]]) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part")
        await writer.drain()
        writer.close()

    _, url = await serve(cut)
    client = HTTPClient()
    with pytest.raises(ProtocolError, match="in the middle of its answer"):
        await post(client, url)
    await client.close()


async def test_not_http_is_a_protocol_error(serve: Callable[..., Awaitable[tuple[Script, str]]]) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    _, url = await serve(garbage)
    client = HTTPClient()
    with pytest.raises(ProtocolError, match="not valid HTTP"):
        await post(client, url)
    await client.close()


async def test_silence_times_out_but_a_slow_steady_stream_does_not(
    serve: Callable[..., Awaitable[tuple[Script, str]]],
) -> None:
    async def steady(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(12):  # 1.2 s in all, longer than the 1 s read timeout; never near 1 s quiet
            await asyncio.sleep(0.1)
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.read(1), 60)  # b"" once the client closes

    _, steady_url = await serve(steady)
    stall_script, stall_url = await serve(stall)
    client = HTTPClient()
    assert await post(client, steady_url, Timeout(read=1)) == (200, b"x" * 12)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ReadTimeout):  # well before the server's minute of silence ends
        await post(client, stall_url, Timeout(read=0.3))
    assert asyncio.get_running_loop().time() - started > 0.25  # not before the read timeout
    # The stalled exchange was abandoned: its connection is closed, not pooled.
    await asyncio.wait_for(stall_script.closed_by_client.wait(), 10)
    await client.close()


async def test_no_first_byte_times_out(serve: Callable[..., Awaitable[tuple[Script, str]]]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)

    _, url = await serve(silent)
    client = HTTPClient()
    with pytest.raises(ReadTimeout):
        await post(client, url, Timeout(read=0.2))
    await client.close()


async def test_leaving_early_closes_the_connection(serve: Callable[..., Awaitable[tuple[Script, str]]]) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"5\r\nhello\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    script, url = await serve(endless)
    client = HTTPClient()
    async with client.post(url, data=b"{}", headers={}, timeout=Timeout()) as response:
        async for _ in response.iter_chunks():
            break
    await asyncio.wait_for(script.closed_by_client.wait(), 10)
    await client.close()


async def test_a_kept_connection_the_server_closed_is_replaced(
    serve: Callable[..., Awaitable[tuple[Script, str]]],
) -> None:
    closed = asyncio.Event()

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer(b"{}")(reader, writer)
        writer.close()  # without saying Connection: close, as idle-timeout closes happen
        await writer.wait_closed()
        closed.set()

    script, url = await serve(once)
    client = HTTPClient()
    assert await post(client, url) == (200, b"{}")
    await asyncio.wait_for(closed.wait(), 10)  # closed by the server before the next request
    assert await post(client, url) == (200, b"{}")
    assert script.connections == 2
    await client.close()


async def test_refused_connection() -> None:
    client = HTTPClient()
    with refused_port() as port, pytest.raises(ConnectError) as caught:
        await post(client, f"http://127.0.0.1:{port}/v1")
    assert "refused" in caught.value.strerror.lower()
    await client.close()


async def test_tls(serve: Callable[..., Awaitable[tuple[Script, str]]], tmp_path: Path) -> None:
    server_tls, trust = _self_signed(tmp_path)
    _, url = await serve(answer(b'{"secure":true}'), server_tls)
    assert await post(HTTPClient(ssl_context=trust), url) == (200, b'{"secure":true}')
    with pytest.raises(ConnectError, match="TLS"):  # the default context does not trust it
        await post(HTTPClient(), url)


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    trust = ssl.create_default_context(cafile=str(cert_file))
    return server, trust


async def test_a_slow_reader_is_not_a_silent_upstream(serve: Callable[..., Awaitable[tuple[Script, str]]]) -> None:
    async def burst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)  # far under the 0.5 s read timeout
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    _, url = await serve(burst)
    client = HTTPClient()
    got = b""
    async with client.post(url, data=b"{}", headers={}, timeout=Timeout(read=0.5)) as response:
        async for chunk in response.iter_chunks():
            got += chunk
            await asyncio.sleep(0.6)  # longer than the read timeout, while the upstream is done
    assert got == b"xxx"
    await client.close()


async def test_a_timeout_on_a_kept_connection_is_not_sent_again(
    serve: Callable[..., Awaitable[tuple[Script, str]]],
) -> None:
    answered: list[int] = []

    async def first_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not answered:
            answered.append(1)
            await answer(b"{}")(reader, writer)
            return
        await asyncio.wait_for(reader.read(1), 60)  # silent until the client gives up

    script, url = await serve(first_only)
    client = HTTPClient()
    assert await post(client, url) == (200, b"{}")
    with pytest.raises(ReadTimeout):
        await post(client, url, Timeout(read=0.3))
    # One timeout, not two: sent again, the request would be the server's third, on a new connection.
    assert len(script.requests) == 2 and script.connections == 1
    await client.close()
