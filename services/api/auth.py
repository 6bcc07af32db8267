"""API tokens: stored hashed, each with one role; who may call what.

The tokens file (``PSYMON_API_TOKENS_FILE``) is JSON: a list of
``{"name": ..., "role": ..., "sha256": ...}``. Tokens are random 256-bit
secrets, so a plain SHA-256 is a safe hash for them (no dictionary to attack);
the file never holds a token itself. ``psymon tokens add`` or
``POST /v1/tokens`` (admin) creates one and shows it once.

A running API notices when the file changes (another process added or
removed a token) and reloads it before the next authentication.

Roles
-----
``ingest``
    may only send events (``POST /v1/events``).
``clinician``
    reads everything and acts on alerts (acknowledge, note, escalate, resolve).
``researcher``
    reads pseudonymised data (GET routes and read-only web views); free-text
    notes and the names of who acted are withheld; may not act on alerts.
``admin``
    may do everything, and manages tokens.

>>> store = TokenStore([])
>>> secret = store.issue("ward-7", "clinician")
>>> store.authenticate(secret)
Principal(name='ward-7', role='clinician')
>>> store.authenticate("not-a-token") is None
True
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["ingest", "clinician", "researcher", "admin"]
ROLES: tuple[Role, ...] = ("ingest", "clinician", "researcher", "admin")

#: Roles that may read patient data (API GET routes and web views).
READERS: tuple[Role, ...] = ("clinician", "researcher", "admin")
#: Roles that may act on alerts.
ACTORS: tuple[Role, ...] = ("clinician", "admin")

#: What a token name may look like (it appears in the audit trail as ``role:name``).
TOKEN_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's name and role."""

    name: str
    role: Role

    @property
    def actor(self) -> str:
        """How the audit trail names this caller: ``role:name``.

        >>> Principal("dr-ana", "clinician").actor
        'clinician:dr-ana'
        """
        return f"{self.role}:{self.name}"


class TokenError(ValueError):
    """A token cannot be created or removed; the message says why."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Hashed tokens, looked up in constant time per entry.

    Parameters
    ----------
    entries
        ``(name, role, sha256)`` triples.
    path
        The tokens file these came from; :meth:`issue` and :meth:`revoke`
        write it back, and a change of it by another process is picked up.
    """

    def __init__(self, entries: list[tuple[str, Role, str]], path: Path | None = None) -> None:
        self._entries = list(entries)
        self._path = path
        self._lock = threading.Lock()
        self._stamp = _stamp(path)

    @classmethod
    def load(cls, path: Path | None) -> TokenStore:
        if path is None or not path.exists():
            return cls([], path)
        return cls(_read(path), path)

    def authenticate(self, token: str) -> Principal | None:
        self._reload_if_changed()
        digest = hash_token(token)
        found = None
        for name, role, stored in self._entries:
            if hmac.compare_digest(digest, stored):
                found = Principal(name, role)
        return found

    def names(self) -> list[tuple[str, Role]]:
        """Every token's name and role (never a hash), sorted by name."""
        self._reload_if_changed()
        return sorted((name, role) for name, role, _ in self._entries)

    def add(self, path: Path, name: str, role: Role) -> str:
        """Create a token, store its hash in ``path``, and return the token (shown once)."""
        self._path = path
        return self.issue(name, role)

    def issue(self, name: str, role: Role) -> str:
        """Create a token named ``name`` with ``role``; return it (it is never stored)."""
        if role not in ROLES:
            raise TokenError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if not TOKEN_NAME_PATTERN.fullmatch(name):
            raise TokenError(
                f"token name {name!r} is not accepted; use 1-64 letters, digits and . _ @ -, "
                "starting with a letter or digit"
            )
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._reload_locked()
            if any(existing == name for existing, _, _ in self._entries):
                raise TokenError(f"a token named {name!r} exists already; choose another name")
            self._entries.append((name, role, hash_token(token)))
            self._save_locked()
        return token

    def revoke(self, name: str) -> Role:
        """Remove the token named ``name``; return its role.

        Refuses to remove the last ``admin`` token, which would leave nobody
        able to manage tokens over HTTP.
        """
        with self._lock:
            self._reload_locked()
            matching = [entry for entry in self._entries if entry[0] == name]
            if not matching:
                raise KeyError(name)
            role = matching[0][1]
            admins = sum(1 for _, r, _ in self._entries if r == "admin")
            if role == "admin" and admins == 1:
                raise TokenError(
                    f"{name!r} is the last admin token; create another admin token first"
                )
            self._entries = [entry for entry in self._entries if entry[0] != name]
            self._save_locked()
        return role

    # ------------------------------------------------------------------ file

    def _reload_if_changed(self) -> None:
        if self._path is None or _stamp(self._path) == self._stamp:
            return
        with self._lock:
            self._reload_locked()

    def _reload_locked(self) -> None:
        stamp = _stamp(self._path)
        if self._path is None or stamp == self._stamp:
            return
        self._entries = _read(self._path) if self._path.exists() else []
        self._stamp = stamp

    def _save_locked(self) -> None:
        if self._path is None:
            return
        document = [{"name": n, "role": r, "sha256": h} for n, r, h in self._entries]
        self._path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(json.dumps(document, indent=2))
        os.replace(scratch, self._path)
        self._path.chmod(0o600)
        self._stamp = _stamp(self._path)


def _read(path: Path) -> list[tuple[str, Role, str]]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    entries: list[tuple[str, Role, str]] = []
    for index, item in enumerate(raw):
        role = item.get("role")
        if role not in ROLES:
            raise ValueError(
                f"{path}: entry {index}: role {role!r} is not one of {', '.join(ROLES)}"
            )
        entries.append((str(item["name"]), role, str(item["sha256"])))
    return entries


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_mtime_ns, info.st_size)
