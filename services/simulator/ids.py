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
from collections.abc import Iterable

from schemas.identity import PSYMON_NAMESPACE

#: The RFC 4122 variant nibble for each hex digit, exactly as uuid.uuid5 sets it.
_VARIANT_OF = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


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
        return _uuid5_text(digest.hexdigest())

    def numbered(self, numbers: Iterable[int]) -> list[str]:
        """The ids of ``(*prefix, str(n))`` for each integer ``n``, in order.

        >>> ids = IdFactory("a", "b")
        >>> ids.numbered([3, 40]) == [ids("3"), ids("40")]
        True
        """
        copy = self._base.copy
        variant = _VARIANT_OF
        out: list[str] = []
        add = out.append
        for number in numbers:
            digest = copy()
            digest.update(b"%d" % number)
            x = digest.hexdigest()
            add(f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{variant[x[16]]}{x[17:20]}-{x[20:32]}")
        return out


def _uuid5_text(x: str) -> str:
    """A SHA-1 hex digest as a UUIDv5 string: version 5 and the RFC 4122 variant bits set."""
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT_OF[x[16]]}{x[17:20]}-{x[20:32]}"
