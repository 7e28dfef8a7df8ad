"""What every study proxy shares: the upstream address, the aiohttp client and the JSON rebuild.

The rebuild functions do what a translating gateway must do on each request: parse the wire JSON,
build a new object field by field (the canonical form), and serialize it again -- for the request,
the response and every SSE event.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import orjson

# Read once at import (start-up of the proxy process); the study runner sets it.
UPSTREAM = os.environ.get("STUDY_UPSTREAM", "http://127.0.0.1:9100") + "/v1/chat/completions"
UPSTREAM_HEADERS = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
TRANSLATE = os.environ.get("STUDY_TRANSLATE") == "1"


def aiohttp_session() -> aiohttp.ClientSession:
    # A generous pool: the default limit of 100 would cap in-flight requests at high latency.
    connector = aiohttp.TCPConnector(limit=1000, keepalive_timeout=60, ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600, sock_connect=5),
                                 auto_decompress=False)


def rebuild_request(body: bytes) -> bytes:
    req: dict[str, Any] = orjson.loads(body)
    canonical = {
        "model": req["model"],
        "messages": [{"role": m["role"], "content": m["content"]} for m in req["messages"]],
        **{k: v for k, v in req.items() if k not in ("model", "messages")},
    }
    return orjson.dumps(canonical)


def _rebuild_choice(c: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"index": c["index"], "finish_reason": c.get("finish_reason")}
    if "message" in c:
        m = c["message"]
        out["message"] = {"role": m["role"], "content": m.get("content")}
    if "delta" in c:
        out["delta"] = dict(c["delta"])
    return out


def rebuild_response(body: bytes) -> bytes:
    doc: dict[str, Any] = orjson.loads(body)
    out = {k: doc[k] for k in ("id", "object", "created", "model") if k in doc}
    out["choices"] = [_rebuild_choice(c) for c in doc.get("choices", [])]
    if doc.get("usage"):
        u = doc["usage"]
        out["usage"] = {"prompt_tokens": u["prompt_tokens"], "completion_tokens": u["completion_tokens"],
                        "total_tokens": u["total_tokens"]}
    return orjson.dumps(out)


class SseRebuilder:
    """Splits upstream SSE bytes into events and re-serializes each one (a per-chunk translation)."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = []
        while (i := self.buf.find(b"\n\n")) >= 0:
            event, self.buf = self.buf[:i], self.buf[i + 2:]
            payload = event[5:].strip() if event.startswith(b"data:") else b""
            if payload and payload != b"[DONE]":
                out.append(b"data: " + rebuild_response(payload) + b"\n\n")
            else:
                out.append(event + b"\n\n")
        return b"".join(out)
