"""Identity at the edge: pseudonyms for patients and stable ids for events.

Pseudonyms are a keyed HMAC-SHA256 of the source identifier (an MRN, a device
serial), so the same person gets the same pseudonym for a given key and a
different one under another key, and nobody without the key can go back
(NIST SP 800-188 §4.2 on keyed hashing for de-identification). The key is a
secret setting of the edge; this module only receives it as bytes.

Event ids are UUIDv5 names in psymon's namespace over the source record's own
identity, so re-importing an export yields the same ids and the store's
``ON CONFLICT DO NOTHING`` makes the re-import a no-op.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from uuid import UUID

#: psymon's UUIDv5 namespace (a fixed random UUID; never change it, or every
#: derived event id changes and re-imports would store duplicates).
PSYMON_NAMESPACE = UUID("5b0f1c2e-8d4a-4f57-9a43-2f1f6c3e9d10")

#: SHA-1 state after the namespace's bytes: every event id hashes them first (RFC 4122 §4.3).
_NAMESPACE_SHA1 = hashlib.sha1(PSYMON_NAMESPACE.bytes)
#: The version (5) and variant (RFC 4122) bits of a UUIDv5, and the hash bits they replace.
_VERSION_VARIANT_MASK = (0xF000 << 64) | (0xC000 << 48)
_VERSION_5_VARIANT = (5 << 76) | (0x8000 << 48)

#: The shape of a patient pseudonym: ``p-`` and 96 bits of the HMAC in hex.
PSEUDONYM_PATTERN = re.compile(r"p-[0-9a-f]{24}")

#: Shortest pseudonym key accepted: 256 bits, the HMAC-SHA256 block strength.
MIN_KEY_BYTES = 32


def pseudonymise(source_id: str, key: bytes, *, system: str = "") -> str:
    """Turn a source identifier into a patient pseudonym with a keyed HMAC.

    ``system`` scopes the identifier (MRN 123 in two hospitals are two people).

    >>> key = b"k" * 32
    >>> p = pseudonymise("MRN-0042", key, system="ehr-north")
    >>> p == pseudonymise("MRN-0042", key, system="ehr-north")
    True
    >>> p != pseudonymise("MRN-0042", b"x" * 32, system="ehr-north")
    True
    >>> bool(PSEUDONYM_PATTERN.fullmatch(p))
    True
    """
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes "
            f"(got {len(key)}); generate one with: "
            "python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    if not source_id:
        raise ValueError("cannot pseudonymise an empty source identifier")
    message = f"{system}\x1f{source_id}".encode()
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()
    return f"p-{digest[:24]}"


def event_id_for(*identity: str) -> UUID:
    """A deterministic event id from the parts of a source record's identity.

    >>> a = event_id_for("fhir", "ehr-north", "Observation/123", "2")
    >>> a == event_id_for("fhir", "ehr-north", "Observation/123", "2")
    True
    >>> a == event_id_for("fhir", "ehr-north", "Observation/123", "3")
    False

    It is ``uuid5(PSYMON_NAMESPACE, "\\x1f".join(identity))``, computed from a
    copy of the namespace's hash state (half the cost of :func:`uuid.uuid5`;
    the core derives a few ids per event):

    >>> from uuid import uuid5
    >>> a == uuid5(PSYMON_NAMESPACE, "\\x1f".join(["fhir", "ehr-north", "Observation/123", "2"]))
    True
    """
    if not identity or any(part == "" for part in identity):
        raise ValueError("an event identity needs at least one non-empty part")
    digest = _NAMESPACE_SHA1.copy()
    digest.update("\x1f".join(identity).encode())
    value = int.from_bytes(digest.digest()[:16])
    return UUID(int=value & ~_VERSION_VARIANT_MASK | _VERSION_5_VARIANT)
