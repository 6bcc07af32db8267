"""Event ids for simulated records, many at a time.

Every id the simulator emits equals :func:`schemas.identity.event_id_for` over
the record's identity parts; :class:`IdFactory` only shares the hashing of the
common prefix, because a cohort has millions of wearable readings and the
UUIDv5 of each one is the largest cost of generating them.

>>> from schemas.identity import event_id_for
>>> ids = IdFactory("simulator", "7", "sim-patient-1", "heart_rate")
>>> ids("42") == str(event_id_for("simulator", "7", "sim-patient-1", "heart_rate", "42"))
True
"""

from __future__ import annotations

import hashlib

from schemas.identity import PSYMON_NAMESPACE

_VARIANT = "89ab"


class IdFactory:
    """UUIDv5 strings for identities that share their leading parts.

    Parameters
    ----------
    *prefix
        The leading identity parts (non-empty strings), as they would be
        passed to :func:`schemas.identity.event_id_for`.

    Examples
    --------
    >>> IdFactory("a", "b")("c")
    'c69cfeed-9cc8-5519-8da7-7b1b5ffa8d6a'
    """

    __slots__ = ("_base",)

    def __init__(self, *prefix: str) -> None:
        if not prefix or any(part == "" for part in prefix):
            raise ValueError("an id prefix needs at least one part and no empty parts")
        self._base = hashlib.sha1(PSYMON_NAMESPACE.bytes + ("\x1f".join(prefix) + "\x1f").encode())

    def __call__(self, last: str) -> str:
        """The id of ``(*prefix, last)`` as a canonical lowercase UUID string."""
        digest = self._base.copy()
        digest.update(last.encode())
        x = digest.hexdigest()
        # RFC 4122 version 5 and variant bits, exactly as uuid.uuid5 sets them.
        variant = _VARIANT[int(x[16], 16) & 3]
        return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{variant}{x[17:20]}-{x[20:32]}"
