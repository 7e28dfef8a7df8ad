"""The portal's sign-in: a session cookie that holds the signed-in key, sealed, and a CSRF token.

The cookie (``mg_session``) is sealed with the gateway's sealing key for this purpose alone
(AES-GCM: ``pipeline/sealing.py``), so the browser's scripts never see the key (``HttpOnly``) and
nobody can read or forge it. ``SameSite=Strict`` keeps other sites' pages from sending it, and
every change also needs the session's CSRF token in ``x-csrf-token`` (a token the page reads from
``GET /ui/api/session``) and, where the browser names one, an ``Origin`` that is the gateway's own.
Every call made with the session authenticates its key again, so a revoked key signs its sessions
out at once.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from modelgate.pipeline.sealing import Sealer

COOKIE = "mg_session"
CSRF_HEADER = "x-csrf-token"
SESSION_S = 12 * 3600
PORTAL_SESSION = b"modelgate.portal.session.v1"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Session:
    key: str
    csrf: str
    expires: int  # unix seconds


def new_session(key: str, now: float | None = None) -> Session:
    return Session(key=key, csrf=secrets.token_urlsafe(24), expires=int((now or time.time()) + SESSION_S))


def seal(sealer: Sealer, session: Session) -> str:
    return sealer.seal({"k": session.key, "c": session.csrf, "e": session.expires})


def opened(sealer: Sealer, cookie: str | None, now: float | None = None) -> Session | None:
    """The session of a cookie this gateway sealed and that has not expired; None otherwise."""
    if not cookie:
        return None
    payload: dict[str, Any] | None = sealer.open(cookie)
    if payload is None:
        return None
    key, csrf, expires = payload.get("k"), payload.get("c"), payload.get("e")
    if not isinstance(key, str) or not isinstance(csrf, str) or not isinstance(expires, int):
        return None
    if expires <= (now or time.time()):
        return None
    return Session(key=key, csrf=csrf, expires=expires)


def csrf_ok(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())


def same_origin(origin: str | None, scheme: str, host: str | None) -> bool:
    """Whether a request's ``Origin`` (where the browser sent one) is the gateway's own."""
    if origin is None:
        return True  # not a browser's cross-origin request: SameSite and the CSRF token still hold
    return host is not None and origin == f"{scheme}://{host}"


def cookie_header(value: str, secure: bool, max_age: int = SESSION_S) -> str:
    attributes = [f"{COOKIE}={value}", "Path=/ui", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        attributes.append("Secure")
    return "; ".join(attributes)
