"""``/v1/tokens``: admins create, list and revoke API tokens.

A created token is returned once, in the response to ``POST``; only its
SHA-256 is stored. Listing shows names and roles, never a token or hash.
Revoking takes effect at the next request (the token file is re-read when it
changes). The last admin token cannot be revoked.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from pydantic import BaseModel, Field

from services.api.auth import TOKEN_NAME_PATTERN, Role, TokenError
from services.api.guards import IsAdmin, token_store

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])
log = logging.getLogger("psymon.api.tokens")

_NAME = f"^{TOKEN_NAME_PATTERN.pattern}$"


class TokenRequest(BaseModel):
    """A token to create: who or what uses it, and its role."""

    name: str = Field(pattern=_NAME, description="1-64 letters, digits and . _ @ -")
    role: Role


class TokenInfo(BaseModel):
    """A token's name and role."""

    name: str
    role: Role


class CreatedToken(TokenInfo):
    """A new token; ``token`` is shown this once and cannot be recovered."""

    token: str


@router.post(
    "",
    response_model=CreatedToken,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "A token with this name exists"}},
)
def create_token(body: TokenRequest, who: IsAdmin, request: Request) -> CreatedToken:
    """Create a token; the response holds it once."""
    try:
        token = token_store(request).issue(body.name, body.role)
    except TokenError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    log.info("token %r (%s) created by %s", body.name, body.role, who.actor)
    return CreatedToken(name=body.name, role=body.role, token=token)


@router.get("", response_model=list[TokenInfo])
def list_tokens(who: IsAdmin, request: Request) -> list[TokenInfo]:
    """Every token's name and role."""
    return [TokenInfo(name=name, role=role) for name, role in token_store(request).names()]


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        404: {"description": "No token with this name"},
        409: {"description": "The last admin token cannot be revoked"},
    },
)
def revoke_token(
    name: Annotated[str, Path(max_length=64)], who: IsAdmin, request: Request
) -> Response:
    """Revoke the token named ``name``."""
    try:
        role = token_store(request).revoke(name)
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no token named {name!r}") from None
    except TokenError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    log.info("token %r (%s) revoked by %s", name, role, who.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
