"""Writing responses: whole bodies and the start of an event stream."""

from __future__ import annotations

from modelgate.http.asgi import Send


def header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def respond(send: Send, status: int, body: bytes, headers: dict[str, str],
                  content_type: bytes = b"application/json") -> None:
    raw = header_list(headers)
    raw.append((b"content-type", content_type))
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def start_stream(send: Send, headers: dict[str, str]) -> None:
    raw = header_list(headers)
    raw.append((b"content-type", b"text/event-stream; charset=utf-8"))
    raw.append((b"cache-control", b"no-cache"))
    # Tell buffering reverse proxies (nginx) to pass each event on at once.
    raw.append((b"x-accel-buffering", b"no"))
    await send({"type": "http.response.start", "status": 200, "headers": raw})
