"""Who may call a route: FastAPI dependencies over the app's :class:`TokenStore`.

* JSON API routes (``/v1/...``) take the token in ``Authorization: Bearer``
  only. A cookie never authenticates them, so another site cannot make a
  browser act on the API (no CSRF surface).
* Web views take the session cookie set by the login form (HttpOnly,
  SameSite=Strict) or the bearer header. Their POST forms carry a CSRF token
  derived from the session's token (:func:`csrf_token`), checked on submit.

Missing or unknown token: 401 (web pages: a redirect to the login form).
A known token whose role may not do this: 403.

(The dependencies are closures over module-level names only, so that FastAPI
can resolve their annotations with ``from __future__ import annotations``.)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.api.auth import ACTORS, READERS, Principal, Role, TokenStore

#: The web session cookie: the token itself, readable by the server only.
SESSION_COOKIE = "psymon_session"

_bearer = HTTPBearer(
    auto_error=False,
    description="An API token (create one with `psymon tokens add` or POST /v1/tokens).",
)


def token_store(request: Request) -> TokenStore:
    """The app's token store (``app.state.tokens``)."""
    tokens: TokenStore = request.app.state.tokens
    return tokens


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: an HMAC keyed by the session's own secret token.

    Only someone who holds the session token can compute it, and the cookie
    that carries that token is HttpOnly and SameSite=Strict.

    >>> csrf_token("abc") == csrf_token("abc") != csrf_token("abd")
    True
    """
    return hmac.new(session_token.encode(), b"psymon-csrf", hashlib.sha256).hexdigest()


def api_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller of an API route, from the bearer token; 401 without a valid one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token; send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    found = token_store(request).authenticate(credentials.credentials)
    if found is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid token (unknown or revoked)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return found


def allow(*roles: Role) -> Callable[..., Principal]:
    """A dependency admitting callers whose role is one of ``roles`` (else 403)."""

    def check(who: Annotated[Principal, Depends(api_principal)]) -> Principal:
        if who.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"role {who.role!r} may not do this; allowed: {', '.join(roles)}",
            )
        return who

    check.__name__ = f"allow_{'_'.join(roles)}"
    return check


CanIngest = Annotated[Principal, Depends(allow("ingest", "admin"))]
CanRead = Annotated[Principal, Depends(allow(*READERS))]
CanAct = Annotated[Principal, Depends(allow(*ACTORS))]
IsAdmin = Annotated[Principal, Depends(allow("admin"))]


# --------------------------------------------------------------------------- web


class LoginRequired(Exception):
    """No valid session: web GETs are redirected to the login form, POSTs get 401."""


class WebForbidden(Exception):
    """A valid session whose role may not see or do this (403 page)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class WebSession:
    """A signed-in web user: who, and the CSRF token their forms must carry."""

    principal: Principal
    csrf: str

    @property
    def can_act(self) -> bool:
        return self.principal.role in ACTORS


def web_session(request: Request) -> WebSession:
    """The web user, from the session cookie or a bearer header; :class:`LoginRequired` if none."""
    token = request.cookies.get(SESSION_COOKIE)
    header = request.headers.get("authorization", "")
    if token is None and header.lower().startswith("bearer "):
        token = header[7:].strip()
    if not token:
        raise LoginRequired
    found = token_store(request).authenticate(token)
    if found is None:
        raise LoginRequired
    return WebSession(found, csrf_token(token))


def web_allow(*roles: Role) -> Callable[..., WebSession]:
    """A web dependency admitting sessions whose role is one of ``roles``."""

    def check(session: Annotated[WebSession, Depends(web_session)]) -> WebSession:
        if session.principal.role not in roles:
            raise WebForbidden(
                f"Signed in as {session.principal.name} ({session.principal.role}); "
                f"this page is for: {', '.join(roles)}."
            )
        return session

    check.__name__ = f"web_allow_{'_'.join(roles)}"
    return check


WebReader = Annotated[WebSession, Depends(web_allow(*READERS))]
WebActor = Annotated[WebSession, Depends(web_allow(*ACTORS))]
