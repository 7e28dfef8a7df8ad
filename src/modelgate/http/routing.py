"""Matching request paths to handlers: exact paths by dictionary, templated ones by pattern."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from modelgate.http.asgi import Send
from modelgate.http.request import HTTPRequest

Endpoint = Callable[[HTTPRequest, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # may hold {name} segments
    endpoint: Endpoint


class PathRouter:
    def __init__(self, routes: list[Route]) -> None:
        self._exact: dict[tuple[str, str], Endpoint] = {}
        self._patterns: list[tuple[str, re.Pattern[str], Endpoint]] = []
        self._paths: set[str] = set()
        for route in routes:
            self._paths.add(route.path)
            if "{" in route.path:
                pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", route.path)
                self._patterns.append((route.method, re.compile(f"^{pattern}$"), route.endpoint))
            else:
                self._exact[(route.method, route.path)] = route.endpoint

    def match(self, request: HTTPRequest) -> tuple[Endpoint | None, bool]:
        """The endpoint for the request, and whether the path exists under another method."""
        path = request.path.rstrip("/") or "/"
        endpoint = self._exact.get((request.method, path))
        if endpoint is not None:
            return endpoint, True
        path_known = any(p == path for (_, p) in self._exact)
        for method, pattern, candidate in self._patterns:
            found = pattern.match(path)
            if found:
                path_known = True
                if method == request.method:
                    request.path_params = found.groupdict()
                    return candidate, True
        return None, path_known
