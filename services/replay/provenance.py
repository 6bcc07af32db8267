"""What a study cites: the manifest written beside every replay and export.

A manifest says what was asked (the query and its filters), what came out
(files, row counts, sha256 of every file), and what produced it (psymon's
version and git commit, the store's schema version, the core configuration's
version and hash, start and finish times). It is JSON, written last, so a
directory with a manifest is complete.

>>> entry = code_version()
>>> entry["psymon"] != "" and set(entry) == {"psymon", "git_commit"}
True
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from schemas.envelope import SCHEMA_VERSION

#: Version of the manifest's own layout; bump it when a field changes meaning.
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    """One file written: its name in the output directory, rows, bytes and sha256."""

    name: str
    rows: int
    bytes: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "bytes": self.bytes, "sha256": self.sha256}


@dataclass(frozen=True)
class Manifest:
    """What a replay or an export wrote, as recorded in its ``manifest.json``.

    ``path`` is ``None`` for a replay that wrote no files (outputs to a topic
    only); ``data`` is the manifest itself; ``sha256`` that of the file.
    """

    path: Path | None
    data: dict[str, Any]
    sha256: str | None

    @property
    def row_counts(self) -> dict[str, int]:
        """Rows per output stream or exported relation."""
        counts: dict[str, int] = self.data.get("row_counts", {})
        return counts

    @property
    def files(self) -> list[dict[str, Any]]:
        """Every file written beside the manifest: name, rows, bytes, sha256."""
        files: list[dict[str, Any]] = self.data.get("files", [])
        return files


def file_entry(path: Path, rows: int) -> FileEntry:
    """Describe a finished file (its sha256 is what a study cites).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "x.csv"
    ...     _ = p.write_text("a\\n1\\n")
    ...     file_entry(p, rows=1).sha256[:12]
    '309b0e45a73d'
    """
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
            size += len(block)
    return FileEntry(path.name, rows, size, digest.hexdigest())


def code_version() -> dict[str, str | None]:
    """psymon's installed version and, when run from a git checkout, the commit.

    The commit is read from ``.git`` (``HEAD``, the ref it names, or
    ``packed-refs``) without running git; ``None`` when there is no checkout.
    """
    try:
        version = importlib.metadata.version("psymon")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    return {"psymon": version, "git_commit": _git_commit(Path(__file__).resolve())}


def code_version_text(version: Mapping[str, str | None]) -> str:
    """``0.1.0+g<commit>`` (or the version alone), the form kept in the audit log.

    >>> code_version_text({"psymon": "0.1.0", "git_commit": "0123456789abcdef"})
    '0.1.0+g0123456789ab'
    """
    commit = version.get("git_commit")
    base = str(version.get("psymon"))
    return f"{base}+g{commit[:12]}" if commit else base


def _git_commit(start: Path) -> str | None:
    for folder in start.parents:
        dot_git = folder / ".git"
        if dot_git.is_file():  # a worktree: "gitdir: <path>"
            text = dot_git.read_text(errors="replace").strip()
            if not text.startswith("gitdir:"):
                return None
            dot_git = (folder / text.removeprefix("gitdir:").strip()).resolve()
        if dot_git.is_dir():
            return _resolve_head(dot_git)
    return None


def _resolve_head(git_dir: Path) -> str | None:
    try:
        head = (git_dir / "HEAD").read_text().strip()
    except OSError:
        return None
    if not head.startswith("ref:"):
        return head or None
    ref = head.removeprefix("ref:").strip()
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        common = (git_dir / commondir.read_text().strip()).resolve()
    for base in (git_dir, common):
        loose = base / ref
        if loose.is_file():
            return loose.read_text().strip() or None
        packed = base / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    return None


def store_schema(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """The event contract version and the store migrations applied (the schema version)."""
    rows = conn.execute(
        "SELECT version, flavour FROM psymon_schema_migrations ORDER BY version"
    ).fetchall()
    return {
        "event_schema_version": SCHEMA_VERSION,
        "store_migrations": [str(version) for version, _ in rows],
        "store_flavour": str(rows[0][1]) if rows else None,
    }


def utc_now() -> datetime:
    """Now, in UTC (manifests and the audit log record wall-clock times)."""
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 text of an aware time, or ``None``.

    >>> iso(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    '2026-03-02T09:30:00+00:00'
    """
    return None if moment is None else moment.isoformat()


def write_manifest(out_dir: Path, manifest: Mapping[str, Any]) -> FileEntry:
    """Write ``manifest.json`` (sorted keys, UTF-8) last; return its description."""
    path = out_dir / MANIFEST_NAME
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    path.write_text(text + "\n", encoding="utf-8")
    return file_entry(path, rows=0)


def prepare_out_dir(out_dir: Path) -> Path:
    """Create ``out_dir``; refuse one that already holds a manifest (a finished run).

    Writing into a finished run's directory would leave files that its manifest
    does not describe, or a manifest that no longer matches its files.
    """
    out_dir = Path(out_dir)
    if (out_dir / MANIFEST_NAME).exists():
        raise FileExistsError(
            f"{out_dir} already holds {MANIFEST_NAME} from an earlier run; choose a new, "
            "empty directory (a manifest must describe exactly the files beside it)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "FileEntry",
    "Manifest",
    "code_version",
    "code_version_text",
    "file_entry",
    "iso",
    "prepare_out_dir",
    "store_schema",
    "utc_now",
    "write_manifest",
]
