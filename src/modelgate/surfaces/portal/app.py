"""The portal: the web UI at /ui, served by the gateway itself from files in this package.

    GET  /ui, /ui/              the page (index.html); the pages inside it are routed by the URL's #fragment
    GET  /ui/static/...         its scripts, styles and images (no CDN, no build step at run time)
    POST /ui/api/session        sign in with a key: {"key": "..."} → the session cookie and who you are
    GET  /ui/api/session        who you are, and the CSRF token every change must carry
    GET  /ui/api/catalog        the deployments the key may call, their facts and prices; for the
                                master key the built-in catalog's models too
    GET  /ui/api/overview       requests, errors, tokens, money and latency over the last hour, day
                                or month (?window=hour|day|month&by=deployment|provider; master key)
    GET  /ui/api/usage          a project key's own project's usage (?period=2030-01&group_by=key)
    DELETE /ui/api/session      sign out
    *    /ui/api/gw/PATH        the gateway's own PATH (/admin/..., /v1/..., /health/deployments,
                                /metrics), called with the session's key

Beyond the session, the catalog and the figures of its overview and of a project's own usage, the
UI has no API of its own: what it shows and changes goes
through the same endpoints, with the same key checks, as any client's calls. A project key's session can use what
that key can (its deployments, the playground) and the admin API refuses it, as it refuses the key.

Every answer carries a Content-Security-Policy that allows scripts, styles and connections only
from the gateway itself (no inline script or style), and headers that keep the page out of frames
and its URLs out of referrers. The pages write what models and users wrote as text, never as HTML.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson

from modelgate.config.settings import DeploymentSettings, Settings
from modelgate.http.asgi import ASGIApp, Message, Receive, Scope, Send
from modelgate.http.request import HTTPRequest
from modelgate.pipeline.contract import Principal
from modelgate.pipeline.sealing import Sealer
from modelgate.schema.errors import AuthenticationFailed, GatewayError, InvalidRequest, NotFound, PermissionDenied
from modelgate.storage import Storage
from modelgate.surfaces.openai_format.render import error_body
from modelgate.surfaces.portal.catalog import catalog_json
from modelgate.surfaces.portal.overview import overview, project_usage
from modelgate.surfaces.portal.session import (
    COOKIE,
    CSRF_HEADER,
    UNSAFE,
    Session,
    cookie_header,
    csrf_ok,
    new_session,
    opened,
    same_origin,
    seal,
)

log = logging.getLogger("modelgate.portal")

PREFIX = "/ui"
STATIC = Path(__file__).parent / "static"
# What the UI may call of the gateway through its session (everything else is the API's alone).
GATEWAY_PATHS = ("/admin/", "/v1/", "/health/deployments", "/metrics")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
                 ".ico": "image/x-icon", ".json": "application/json"}
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
                                 b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class PortalCore(Protocol):
    def authenticate(self, headers: Any) -> Principal: ...

    @property
    def deployments(self) -> Mapping[str, DeploymentSettings]: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def storage(self) -> Storage: ...

    @property
    def portal_sealer(self) -> Sealer:
        """What seals the session cookies."""
        ...


class Portal:
    """The portal's ASGI app; ``gateway`` is the whole gateway, which its calls go through."""

    def __init__(self, core: PortalCore, gateway: ASGIApp) -> None:
        self.core = core
        self.gateway = gateway
        self.files = {path.relative_to(STATIC).as_posix(): path for path in STATIC.rglob("*") if path.is_file()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        secured = _secured(send)
        path: str = scope["path"]
        try:
            if path in (PREFIX, PREFIX + "/", PREFIX + "/index.html"):
                await self._file(scope, secured, "index.html")
            elif path.startswith(PREFIX + "/static/"):
                await self._file(scope, secured, path[len(PREFIX + "/static/"):])
            elif path == PREFIX + "/api/session":
                await self._session(scope, receive, secured)
            elif path == PREFIX + "/api/catalog":
                await self._catalog(scope, receive, secured)
            elif path == PREFIX + "/api/overview":
                await self._overview(scope, receive, secured)
            elif path == PREFIX + "/api/usage":
                await self._usage(scope, receive, secured)
            elif path.startswith(PREFIX + "/api/gw/"):
                await self._gateway(scope, receive, secured, path[len(PREFIX + "/api/gw"):])
            else:
                raise NotFound(f"There is no page {path}; the portal is at {PREFIX}/.", code="unknown_url")
        except GatewayError as error:
            await _answer(secured, error.status, error_body(error), {"content-type": "application/json"})

    async def _file(self, scope: Scope, send: Send, name: str) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            raise InvalidRequest(f"{scope['method']} is not allowed here; the portal's pages are read with GET")
        path = self.files.get(name)
        if path is None:
            raise NotFound(f"There is no file {name} in the portal.", code="unknown_url")
        kind = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        # Small and few: read on each request, so that a page is always the installed one; the
        # browser revalidates each with its ETag and gets a 304 while it has the same bytes.
        body = path.read_bytes()
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        headers = {"content-type": kind, "cache-control": "no-cache", "etag": etag}
        if etag in HTTPRequest(scope, _nothing).headers.get("if-none-match", ""):
            await _answer(send, 304, b"", {"etag": etag, "cache-control": "no-cache"})
            return
        await _answer(send, 200, body if scope["method"] == "GET" else b"", headers)

    async def _session(self, scope: Scope, receive: Receive, send: Send) -> None:
        http = HTTPRequest(scope, receive)
        sealer = self.core.portal_sealer
        method = scope["method"]
        if method == "POST":
            _check_origin(scope, http)
            body = await http.json()
            key = body.get("key") if isinstance(body, dict) else None
            if not isinstance(key, str) or not key.strip():
                raise InvalidRequest("Send {\"key\": \"...\"}: the master key or a project key.", param="key")
            principal = self._principal(key.strip())
            made = new_session(key.strip())
            headers = {"content-type": "application/json",
                       "set-cookie": cookie_header(seal(sealer, made), _secure(scope))}
            await _answer(send, 200, _who(principal, made), headers)
            return
        session = opened(sealer, _cookie(http))
        if method == "GET":
            if session is None:  # not an error: the page asks to know whether to show the sign-in
                await _answer(send, 200, b'{"signed_in":false}', {"content-type": "application/json"})
                return
            await _answer(send, 200, _who(self._principal(session.key), session), {"content-type": "application/json"})
        elif method == "DELETE":
            if session is not None:
                _check_change(scope, http, session)
            await _answer(send, 200, b'{"signed_in":false}', {
                "content-type": "application/json", "set-cookie": cookie_header("", _secure(scope), max_age=0)})
        else:
            raise InvalidRequest(f"{method} is not allowed on {PREFIX}/api/session (GET, POST, DELETE)")

    async def _catalog(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = opened(self.core.portal_sealer, _cookie(HTTPRequest(scope, receive)))
        if session is None:
            raise AuthenticationFailed("Not signed in, or the session ended: sign in again.", code="not_signed_in")
        principal = self._principal(session.key)
        # A local provider's store is read from its folder: off the event loop.
        body = orjson.dumps(await asyncio.to_thread(catalog_json, self.core.deployments, principal,
                                                    self.core.settings.providers))
        await _answer(send, 200, body, {"content-type": "application/json", "cache-control": "no-store"})

    async def _overview(self, scope: Scope, receive: Receive, send: Send) -> None:
        http = HTTPRequest(scope, receive)
        session = opened(self.core.portal_sealer, _cookie(http))
        if session is None:
            raise AuthenticationFailed("Not signed in, or the session ended: sign in again.", code="not_signed_in")
        if self._principal(session.key).key_id != "master":
            raise PermissionDenied("The overview of every project needs the master key.", code="master_key_required")
        params = dict(parse_qsl(http.query.decode("latin-1")))
        body = orjson.dumps(await overview(self.core.storage, params.get("window", "hour"),
                                           params.get("by", "deployment")))
        await _answer(send, 200, body, {"content-type": "application/json", "cache-control": "no-store"})

    async def _usage(self, scope: Scope, receive: Receive, send: Send) -> None:
        http = HTTPRequest(scope, receive)
        session = opened(self.core.portal_sealer, _cookie(http))
        if session is None:
            raise AuthenticationFailed("Not signed in, or the session ended: sign in again.", code="not_signed_in")
        principal = self._principal(session.key)
        if principal.project is None:
            raise InvalidRequest("This is a project key's view of its own usage; the master key reads "
                                 "/admin/usage.", code="project_key_required")
        params = dict(parse_qsl(http.query.decode("latin-1")))
        body = orjson.dumps(await project_usage(self.core.storage, principal.project, params.get("period"),
                                                params.get("group_by", "key")))
        await _answer(send, 200, body, {"content-type": "application/json", "cache-control": "no-store"})

    def _principal(self, key: str) -> Principal:
        return self.core.authenticate({"authorization": f"Bearer {key}"})

    async def _gateway(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        http = HTTPRequest(scope, receive)
        session = opened(self.core.portal_sealer, _cookie(http))
        if session is None:
            raise AuthenticationFailed("Not signed in, or the session ended: sign in again.", code="not_signed_in")
        if scope["method"] in UNSAFE:
            _check_change(scope, http, session)
        if not path.startswith(GATEWAY_PATHS) and path not in ("/health/deployments", "/metrics"):
            raise PermissionDenied(f"The portal does not call {path}.", code="not_allowed")
        headers = [(name, value) for name, value in scope["headers"]
                   if name not in (b"cookie", b"authorization", b"x-api-key", b"api-key", CSRF_HEADER.encode())]
        headers.append((b"authorization", f"Bearer {session.key}".encode("latin-1")))
        inner = {**scope, "path": path, "raw_path": path.encode(), "headers": headers}

        async def uncached(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"cache-control", b"no-store")]}
            await send(message)

        await self.gateway(inner, receive, uncached)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def _who(principal: Principal, session: Session) -> bytes:
    master = principal.key_id == "master"
    return orjson.dumps({"signed_in": True, "role": "master" if master else "project", "project": principal.project,
                         "key_id": principal.key_id, "csrf": session.csrf, "expires": session.expires})


def _cookie(http: HTTPRequest) -> str | None:
    header: str = http.headers.get("cookie", "")
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def _secure(scope: Scope) -> bool:
    return scope.get("scheme") == "https"


def _check_origin(scope: Scope, http: HTTPRequest) -> None:
    if not same_origin(http.headers.get("origin"), scope.get("scheme", "http"), http.headers.get("host")):
        raise PermissionDenied("This request came from another site's page; the portal takes changes only from "
                               "its own.", code="cross_origin")


def _check_change(scope: Scope, http: HTTPRequest, session: Session) -> None:
    _check_origin(scope, http)
    if not csrf_ok(session, http.headers.get(CSRF_HEADER)):
        raise PermissionDenied(f"A change needs the session's CSRF token in {CSRF_HEADER} (from GET "
                               f"{PREFIX}/api/session); reload the page.", code="csrf_token_missing")


def _secured(send: Send) -> Send:
    """``send`` with the portal's security headers on every answer."""
    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
        await send(message)
    return secured


async def _answer(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in
                            {**headers, "content-length": str(len(body))}.items()]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
