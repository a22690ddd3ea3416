"""What every request to ``latentcam app`` passes before it reaches a route: pure ASGI
middleware, so that a refused request costs no body read and no model work.

- :class:`TokenGate`: with a token (any ``--token``, and always for a non-loopback
  ``--host``), every request must carry it, as Jupyter's do: ``?token=...`` in the URL
  (a GET then sets an HttpOnly, SameSite=Strict cookie, so the page's own requests carry
  it), the cookie, or an ``Authorization: token ...`` (or ``Bearer ...``) header. Compared
  with :func:`hmac.compare_digest`.
- :class:`SameOrigin`: a request that changes state (not GET/HEAD/OPTIONS) sent by a
  browser from another page (an ``Origin`` that is not this server, or
  ``Sec-Fetch-Site: cross-site``) is refused, so that a page elsewhere cannot press the
  explorer's buttons (cross-site request forgery).
- :class:`BodyLimit`: the body is read in the chunks the server receives and refused with
  413 as soon as it passes the route's cap; a declared ``Content-Length`` above the cap is
  refused before a byte of the body is read, and a ``Content-Length`` that is not one
  decimal number with 400. The route then gets the body (at most the cap) at once.

Every refusal is ``{"error": message}`` as JSON, like the routes' errors.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Methods that only read (a browser may send them from any page; they change nothing).
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def header(scope: Scope, name: bytes) -> list[str]:
    """Every value of the request header ``name`` (lower case), decoded as Latin-1."""
    return [value.decode("latin-1") for key, value in scope["headers"] if key == name]


def query_value(scope: Scope, name: str) -> str | None:
    """The first value of ``name`` in the query string, or None."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None


async def refuse(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer ``{"error": message}`` with ``status`` (and ``headers``)."""
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class TokenGate:
    """Refuse (403) every request without ``token`` (see the module docstring)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    @staticmethod
    def cookie_name(scope: Scope) -> str:
        """One cookie per port: browsers share cookies between the ports of a host, and
        two servers on one machine have two tokens."""
        server = scope.get("server") or (None, None)
        return f"latentcam-token-{server[1]}" if server[1] else "latentcam-token"

    def _matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode("utf-8", "surrogateescape"), self.token
        )

    def _from_cookie(self, scope: Scope) -> str | None:
        jar: SimpleCookie = SimpleCookie()
        for text in header(scope, b"cookie"):
            try:
                jar.load(text)
            except CookieError:
                continue
        morsel = jar.get(self.cookie_name(scope))
        return None if morsel is None else morsel.value

    @staticmethod
    def _from_header(scope: Scope) -> str | None:
        for value in header(scope, b"authorization"):
            scheme, _, credential = value.strip().partition(" ")
            if scheme.lower() in ("token", "bearer"):
                return credential.strip()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        in_url = query_value(scope, "token")
        if self._matches(self._from_header(scope)) or self._matches(self._from_cookie(scope)):
            await self.app(scope, receive, send)
            return
        if not self._matches(in_url):
            await refuse(
                send,
                403,
                "this latentcam app needs its token: open the address with ?token=... that "
                "'latentcam app' printed, or send the header 'Authorization: token ...'",
            )
            return
        if scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        cookie = (
            f"{self.cookie_name(scope)}={self.token.decode()}; Path=/; HttpOnly; SameSite=Strict"
        ).encode()

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class SameOrigin:
    """Refuse (403) a state-changing request sent by a browser from another origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        hosts = [h.lower() for h in header(scope, b"host")]
        for origin in header(scope, b"origin"):
            netloc = urlsplit(origin.strip()).netloc.lower() if origin.strip() != "null" else ""
            if not netloc or netloc not in hosts:
                await refuse(
                    send,
                    403,
                    f"{scope['path']}: refused a request sent from another page ({origin}); "
                    "use the explorer's own page",
                )
                return
        if "cross-site" in [v.strip().lower() for v in header(scope, b"sec-fetch-site")]:
            await refuse(
                send,
                403,
                f"{scope['path']}: refused a request sent from another site; use the "
                "explorer's own page",
            )
            return
        await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    """Internal: the body passed its cap while it was read."""


#: What :class:`BodyLimit` asks of the app: ``(cap in bytes, message when over)`` for a
#: request's scope.
LimitFor = Callable[[Scope], tuple[int, str]]


class BodyLimit:
    """Cap every request body while it streams (see the module docstring).

    Args:
        app: the ASGI app behind.
        limit_for: the cap in bytes of a request (by its scope: path, query) and the
            message of the 413 answer.

    A refused request is answered with ``Connection: close``: the rest of its body is never
    read.
    """

    def __init__(self, app: ASGIApp, limit_for: LimitFor) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap, too_large = self.limit_for(scope)
        close = [(b"connection", b"close")]
        lengths = header(scope, b"content-length")
        if lengths:
            if len(set(lengths)) > 1 or not all(v.strip().isdigit() for v in lengths):
                await refuse(
                    send,
                    400,
                    f"{scope['path']}: the Content-Length header {', '.join(lengths)!r} is not "
                    "one number of bytes",
                    close,
                )
                return
            if int(lengths[0]) > cap:
                await refuse(send, 413, too_large, close)
                return
        try:
            body = await self._read(receive, cap)
        except BodyTooLarge:
            await refuse(send, 413, too_large, close)
            return
        if body is None:  # the client went away
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # after the body: the disconnect, when it comes
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _read(receive: Receive, cap: int) -> bytes | None:
        """The whole body, read chunk by chunk; None when the client disconnected.

        Raises:
            BodyTooLarge: more than ``cap`` bytes arrived (no more are read).
        """
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
