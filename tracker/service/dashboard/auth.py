"""Sessions, login and CSRF for the dashboard.

A session is a cookie ``tracker_session`` holding ``base64(json).base64(hmac)``: a
random session ID, whether it logged in, when it ends, and at most one flash
message for the next page. It is signed with HMAC-SHA256 under a key derived from
TRACKER_SERVE_TOKEN (so sessions survive a restart and end when the token
changes), or under a random key of this process when no token is set. The token
itself is never in a cookie, a URL or a page.

The CSRF token of a form is HMAC(key, "csrf" + session ID): the same for every form
of a session, and useless in another one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

#: the cookie's name
COOKIE = "tracker_session"
#: seconds a session lasts (a login, or the anonymous session of a login form)
SESSION_SECONDS = 12 * 3600
#: the longest flash message kept (characters)
FLASH_CHARS = 300
#: what the key is derived from the token with
_KEY_LABEL = b"tracker dashboard session key v1"


@dataclass(frozen=True, slots=True)
class Session:
    """One browser's session: ``authenticated`` after a login (always True when the
    service has no token), ``flash``: ``(kind, text)`` for the next page."""

    sid: str
    authenticated: bool
    expires: int
    flash: tuple[str, str] | None = None
    #: not part of the cookie: whether the response must (re)set it
    dirty: bool = False


class Sessions:
    """Makes, signs and reads sessions; checks the token and CSRF tokens."""

    def __init__(self, token: str | None, *, clock: Callable[[], float] = time.time) -> None:
        self._token_digest = None if token is None else hashlib.sha256(token.encode()).digest()
        if token is None:
            self._key = secrets.token_bytes(32)
        else:
            self._key = hmac.new(token.encode(), _KEY_LABEL, hashlib.sha256).digest()
        self._clock = clock

    @property
    def open(self) -> bool:
        """Whether pages need no login (no TRACKER_SERVE_TOKEN: loopback only)."""
        return self._token_digest is None

    # -- the token -------------------------------------------------------------------

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is the token, in constant time (lengths included)."""
        if self._token_digest is None:
            return False
        digest = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
        return hmac.compare_digest(digest, self._token_digest)

    def bearer_matches(self, header: str) -> bool:
        """Whether an ``Authorization`` header carries the token (``Bearer TOKEN``)."""
        scheme, _, given = header.partition(" ")
        return scheme == "Bearer" and self.token_matches(given)

    # -- sessions --------------------------------------------------------------------

    def new(self, *, authenticated: bool = False) -> Session:
        expires = int(self._clock()) + SESSION_SECONDS
        return Session(secrets.token_hex(16), authenticated or self.open, expires, dirty=True)

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie holds, or None when it is missing, forged or over."""
        if not cookie:
            return None
        payload_text, _, signature_text = cookie.partition(".")
        try:
            payload = _unb64(payload_text)
            signature = _unb64(signature_text)
        except ValueError:
            return None
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        return self._session(payload)

    def _session(self, payload: bytes) -> Session | None:
        try:
            data: Any = json.loads(payload)
            sid, authenticated, expires = str(data["sid"]), bool(data["auth"]), int(data["exp"])
            flash = data.get("flash")
            shown = (str(flash[0]), str(flash[1])) if isinstance(flash, list) else None
        except (ValueError, KeyError, TypeError, IndexError):
            return None
        if expires <= self._clock():
            return None
        return Session(sid, authenticated or self.open, expires, shown)

    def cookie_value(self, session: Session) -> str:
        data: dict[str, Any] = {
            "sid": session.sid,
            "auth": session.authenticated,
            "exp": session.expires,
        }
        if session.flash is not None:
            data["flash"] = list(session.flash)
        payload = json.dumps(data, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def set_cookie(self, response: web.StreamResponse, session: Session, *, secure: bool) -> None:
        max_age = max(0, session.expires - int(self._clock()))
        response.set_cookie(
            COOKIE,
            self.cookie_value(session),
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=secure,
        )

    # -- CSRF ------------------------------------------------------------------------

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._key, b"csrf" + session.sid.encode(), hashlib.sha256).hexdigest()

    def csrf_matches(self, session: Session | None, given: str) -> bool:
        if session is None or not given:
            return False
        return hmac.compare_digest(given.encode(), self.csrf_token(session).encode())

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()


def with_flash(session: Session, kind: str, text: str) -> Session:
    """``session`` carrying a message for the next page (``kind``: ok or error)."""
    return replace(session, flash=(kind, text[:FLASH_CHARS]), dirty=True)


def without_flash(session: Session) -> Session:
    return replace(session, flash=None, dirty=True) if session.flash else session


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
