"""The upstream HTTP client against scripted servers on real sockets: framing, reuse, timeouts, TLS,
egress proxies."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from modelgate.providers.base import UpstreamCall
from modelgate.providers.registry import create_provider
from modelgate.providers.settings import ProviderSettings
from modelgate.providers.transport import (
    ConnectError,
    DeadlineExceeded,
    HTTPClient,
    ProtocolError,
    ReadTimeout,
    Timeout,
    UpstreamRequest,
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


async def post(client: HTTPClient, url: str, limits: Timeout = QUICK, proxy: str | None = None) -> tuple[int, bytes]:
    request = UpstreamRequest("POST", url, {"Authorization": "Bearer k"}, b'{"a":1}', limits, proxy)
    async with client.send(request) as response:
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
    async with client.send(UpstreamRequest("POST", url, {}, b"{}", Timeout(read=30))) as response:
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
    async with client.send(UpstreamRequest("POST", url, {}, b"{}", Timeout())) as response:
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


async def test_a_status_line_and_headers_dribbled_byte_by_byte_time_out_after_read(
    serve: Callable[..., Awaitable[tuple[Script, str]]],
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for byte in head:  # each gap far below the read timeout; the whole head far above it
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"{}")
        await writer.drain()

    script, url = await serve(dribble)
    client = HTTPClient()
    with pytest.raises(ReadTimeout, match=r"no status line and headers from the upstream within 0\.5s"):
        await post(client, url, Timeout(read=0.5))
    await asyncio.wait_for(script.closed_by_client.wait(), 10)
    await client.close()


async def test_an_answer_past_its_total_deadline_fails_whole_or_streamed(
    serve: Callable[..., Awaitable[tuple[Script, str]]],
) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"5\r\nhello\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    script, url = await serve(endless)
    client = HTTPClient()
    with pytest.raises(DeadlineExceeded, match=r"did not end within 0\.3s"):
        await post(client, url, Timeout(read=5, total=0.3))
    received = 0
    with pytest.raises(DeadlineExceeded):
        async with client.send(UpstreamRequest("POST", url, {}, b"{}", Timeout(read=5, total=0.3))) as response:
            async for chunk in response.iter_chunks():
                received += len(chunk)
    assert received > 0  # it streamed until the deadline
    await asyncio.wait_for(script.closed_by_client.wait(), 10)
    await client.close()


async def test_a_deadline_holds_while_the_body_comes_faster_than_it_is_read(
    serve: Callable[..., Awaitable[tuple[Script, str]]],
) -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % 65536 + b"x" * 65536 + b"\r\n"
        while True:
            writer.write(chunk)
            await writer.drain()

    _, url = await serve(flood)
    client = HTTPClient()
    with pytest.raises(DeadlineExceeded):
        async with client.send(UpstreamRequest("POST", url, {}, b"{}", Timeout(read=5, total=0.3))) as response:
            async for _ in response.iter_chunks():  # there is always more buffered
                await asyncio.sleep(0.001)
    await client.close()


async def test_a_head_over_the_limit_is_a_protocol_error(serve: Callable[..., Awaitable[tuple[Script, str]]]) -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for n in range(100_000):
            writer.write(b"X-Filler-%d: %s\r\n" % (n, b"a" * 50))
            await writer.drain()
        writer.write(b"Content-Length: 0\r\n\r\n")

    _, url = await serve(huge)
    client = HTTPClient()
    with pytest.raises(ProtocolError, match="status line and headers run over"):
        await post(client, url)
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
    async with client.send(UpstreamRequest("POST", url, {}, b"{}", Timeout())) as response:
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
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
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
    async with client.send(UpstreamRequest("POST", url, {}, b"{}", Timeout(read=0.5))) as response:
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


# --- egress proxy --------------------------------------------------------------------------------


class Proxy:
    """An HTTP proxy: CONNECT tunnels, and absolute-form requests passed on to their origin as sent
    (HTTP/1.1 servers take the absolute form). It keeps the head each connection opened with."""

    def __init__(self, credentials: str | None = None) -> None:
        self.required = f"Basic {base64.b64encode(credentials.encode()).decode()}" if credentials else None
        self.heads: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        self.heads.append(head)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        fields = dict(line.split(": ", 1) for line in lines[1:] if line)
        if self.required is not None and fields.get("Proxy-Authorization") != self.required:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n"
                         b"Content-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            origin_reader, origin_writer = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            url = urlsplit(target)
            origin_reader, origin_writer = await asyncio.open_connection(url.hostname, url.port or 80)
            origin_writer.write(head)
        await asyncio.gather(_pipe(reader, origin_writer), _pipe(origin_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def start_proxy(servers: list[asyncio.Server], credentials: str | None = None) -> tuple[Proxy, str]:
    proxy = Proxy(credentials)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    servers.append(server)
    return proxy, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def proxies() -> AsyncIterator[Callable[..., Awaitable[tuple[Proxy, str]]]]:
    servers: list[asyncio.Server] = []

    async def start(credentials: str | None = None) -> tuple[Proxy, str]:
        return await start_proxy(servers, credentials)

    yield start
    for server in servers:
        server.close()


async def https_through_a_tunnel(tmp_path: Path) -> tuple[list[tuple[int, bytes]], Proxy, Script, list[str | None]]:
    """Two requests to a TLS upstream named ``localhost`` through a CONNECT proxy with credentials."""
    servers: list[asyncio.Server] = []
    server_tls, trust = _self_signed(tmp_path)
    names: list[str | None] = []

    def sni(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        names.append(name)

    server_tls.sni_callback = sni
    script = Script(answer(b'{"secure":true}'))
    upstream = await asyncio.start_server(script.serve, "127.0.0.1", 0, ssl=server_tls)
    servers.append(upstream)
    proxy, proxy_url = await start_proxy(servers, "user:p@ss")
    client = HTTPClient(ssl_context=trust)
    url = f"https://localhost:{upstream.sockets[0].getsockname()[1]}/v1/chat?x=1"
    with_credentials = proxy_url.replace("http://", "http://user:p%40ss@")
    try:
        answers = [await post(client, url, proxy=with_credentials) for _ in range(2)]
    finally:
        await client.close()
        for server in servers:
            server.close()
    return answers, proxy, script, names


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_https_goes_through_a_connect_tunnel_then_tls_with_the_upstream(loop: str, tmp_path: Path) -> None:
    scenario = https_through_a_tunnel(tmp_path)
    run: Callable[[Coroutine[Any, Any, Any]], Any] = asyncio.run
    if loop == "uvloop":
        import uvloop

        run = uvloop.run
    answers, proxy, script, names = run(scenario)
    assert answers == [(200, b'{"secure":true}')] * 2
    # One tunnel, reused; the proxy saw only the CONNECT, the upstream the request as sent directly.
    [head] = proxy.heads
    port = head.split(b"\r\n")[0].split(b":")[1].split(b" ")[0].decode()
    assert head == (f"CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n"
                    f"Proxy-Authorization: Basic {base64.b64encode(b'user:p@ss').decode()}\r\n\r\n").encode()
    assert names == ["localhost"]  # SNI names the upstream
    assert script.connections == 1 and len(script.requests) == 2
    lines = script.requests[0].split(b"\r\n")
    assert lines[0] == b"POST /v1/chat?x=1 HTTP/1.1" and f"Host: localhost:{port}".encode() in lines
    assert not any(line.lower().startswith(b"proxy-") for line in lines)


async def test_http_goes_to_the_proxy_with_the_absolute_url(
    serve: Callable[..., Awaitable[tuple[Script, str]]], proxies: Callable[..., Awaitable[tuple[Proxy, str]]],
) -> None:
    script, url = await serve(answer(b'{"ok":true}'))
    proxy, proxy_url = await proxies("u:secret")
    client = HTTPClient()
    assert await post(client, url) == (200, b'{"ok":true}')  # directly
    via = proxy_url.replace("http://", "http://u:secret@")
    assert await post(client, url, proxy=via) == (200, b'{"ok":true}')
    assert await post(client, url, proxy=via) == (200, b'{"ok":true}')
    await client.close()
    # Pooled apart: one connection straight to the upstream, one through the proxy, reused.
    assert script.connections == 2 and len(proxy.heads) == 1
    lines = proxy.heads[0].split(b"\r\n")
    origin = url.split("/v1")[0]
    assert lines[0] == f"POST {origin}/v1/chat?x=1 HTTP/1.1".encode()
    assert f"Host: {origin.removeprefix('http://')}".encode() in lines
    assert f"Proxy-Authorization: Basic {base64.b64encode(b'u:secret').decode()}".encode() in lines
    assert b"Authorization: Bearer k" in lines


async def test_a_proxy_that_refuses_the_tunnel_is_a_connect_error_naming_it(
    proxies: Callable[..., Awaitable[tuple[Proxy, str]]],
) -> None:
    _, proxy_url = await proxies("user:right")
    client = HTTPClient()
    for via in (proxy_url, proxy_url.replace("http://", "http://user:wrong@")):
        with pytest.raises(ConnectError) as caught:
            await post(client, "https://api.example.invalid/v1/chat", proxy=via)
        error = caught.value
        assert str(error) == (f"the proxy {proxy_url} refused the tunnel to api.example.invalid:443: "
                              "407 Proxy Authentication Required")
        assert error.strerror == f"the proxy {proxy_url} refused the tunnel: 407 Proxy Authentication Required"
        assert "wrong" not in str(error) + error.strerror
    await client.close()


async def test_an_unreachable_or_unusable_proxy(unused_tcp_port: int) -> None:
    client = HTTPClient()
    proxy_url = f"http://127.0.0.1:{unused_tcp_port}"
    # With credentials, and without a scheme (as HTTPS_PROXY often holds it): http:// is meant.
    for url, via in [("https://api.example.invalid/v1", proxy_url.replace("http://", "http://me:pw@")),
                     ("http://api.example.invalid/v1", proxy_url.replace("http://", "me:pw@"))]:
        with pytest.raises(ConnectError) as caught:
            await post(client, url, proxy=via)
        assert str(caught.value) == f"cannot connect to the proxy {proxy_url}: Connection refused"
        assert caught.value.strerror == f"Connection refused (proxy {proxy_url})"
    with pytest.raises(ConnectError, match="only http://host:port proxy URLs"):
        await post(client, "https://api.example.invalid/v1", proxy="socks5://me:pw@127.0.0.1:1080")
    await client.close()


async def test_a_provider_sends_through_its_proxy(
    sim: Any, proxies: Callable[..., Awaitable[tuple[Proxy, str]]],
) -> None:
    from modelgate.schema.errors import UpstreamUnreachable
    from modelgate.schema.events import fold_events
    from modelgate.schema.request import ChatRequest, Message, TextPart

    proxy, proxy_url = await proxies()
    client = HTTPClient()
    request = ChatRequest(model="m", messages=[Message("user", [TextPart("hi")])], stream=True)
    settings = ProviderSettings(name="sim", type="openai", base_url=f"{sim.base_url}/v1", api_key="sk-sim",
                                proxy=proxy_url)
    provider = create_provider(settings, client)
    result = fold_events([event async for event in provider.chat(request, UpstreamCall(model="gpt-4o"))])
    assert result.choices[0].text and result.choices[0].finish_reason == "stop"
    assert proxy.heads[0].startswith(f"POST {sim.base_url}/v1/chat/completions HTTP/1.1\r\n".encode())

    _, refusing = await proxies("someone:else")
    settings = ProviderSettings(name="far", type="anthropic", base_url="https://api.anthropic.example",
                                proxy=refusing)
    with pytest.raises(UpstreamUnreachable) as caught:
        [event async for event in create_provider(settings, client).chat(request, UpstreamCall(model="c"))]
    assert caught.value.message == (f"provider 'far' is unreachable at https://api.anthropic.example: the proxy "
                                    f"{refusing} refused the tunnel: 407 Proxy Authentication Required")
    await client.close()


async def test_a_proxy_silent_to_connect_times_out_as_connecting() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(reader.read(), 5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    client = HTTPClient()
    with pytest.raises(ConnectError) as caught:
        await post(client, "https://api.example.invalid/v1", Timeout(connect=0.3, read=5), proxy=proxy_url)
    assert str(caught.value) == f"connecting to api.example.invalid:443 through the proxy {proxy_url} took over 0.3s"
    assert caught.value.strerror == "connect timeout"
    await client.close()
    server.close()
