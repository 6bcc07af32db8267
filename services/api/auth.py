"""API tokens: stored hashed, each with one role.

The tokens file (``PSYMON_API_TOKENS_FILE``) is JSON: a list of
``{"name": ..., "role": ..., "sha256": ...}``. Tokens are random 256-bit
secrets, so a plain SHA-256 is a safe hash for them (no dictionary to attack);
the file never holds a token itself. ``psymon tokens add`` creates one and
prints it once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["ingest", "clinician", "researcher", "admin"]
ROLES: tuple[Role, ...] = ("ingest", "clinician", "researcher", "admin")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's name and role."""

    name: str
    role: Role


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Hashed tokens, looked up in constant time per entry."""

    def __init__(self, entries: list[tuple[str, Role, str]]) -> None:
        self._entries = entries

    @classmethod
    def load(cls, path: Path | None) -> TokenStore:
        if path is None or not path.exists():
            return cls([])
        raw = json.loads(path.read_text(encoding="utf-8"))
        entries = []
        for index, item in enumerate(raw):
            role = item.get("role")
            if role not in ROLES:
                raise ValueError(
                    f"{path}: entry {index}: role {role!r} is not one of {', '.join(ROLES)}"
                )
            entries.append((str(item["name"]), role, str(item["sha256"])))
        return cls(entries)

    def authenticate(self, token: str) -> Principal | None:
        digest = hash_token(token)
        found = None
        for name, role, stored in self._entries:
            if hmac.compare_digest(digest, stored):
                found = Principal(name, role)
        return found

    def add(self, path: Path, name: str, role: Role) -> str:
        """Create a token, store its hash in ``path``, and return the token (shown once)."""
        token = secrets.token_urlsafe(32)
        self._entries.append((name, role, hash_token(token)))
        path.parent.mkdir(parents=True, exist_ok=True)
        document = [{"name": n, "role": r, "sha256": h} for n, r, h in self._entries]
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")
        path.chmod(0o600)
        return token
