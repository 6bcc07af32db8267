"""Pseudonyms are stable for a key, differ across keys, and never reveal the source."""

from __future__ import annotations

from uuid import uuid5

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.identity import PSEUDONYM_PATTERN, PSYMON_NAMESPACE, event_id_for, pseudonymise
from services.settings import Settings, SettingsError

KEY_A = b"a" * 32
KEY_B = b"b" * 32


@given(st.text(min_size=1, max_size=40))
def test_pseudonym_stable_for_a_key_and_shaped(source_id: str) -> None:
    first = pseudonymise(source_id, KEY_A)
    assert first == pseudonymise(source_id, KEY_A)
    assert PSEUDONYM_PATTERN.fullmatch(first)
    assert source_id not in first[2:] or len(source_id) < 4


@given(st.text(min_size=1, max_size=40))
def test_pseudonyms_differ_across_keys(source_id: str) -> None:
    assert pseudonymise(source_id, KEY_A) != pseudonymise(source_id, KEY_B)


def test_system_scopes_the_identifier() -> None:
    assert pseudonymise("123", KEY_A, system="north") != pseudonymise("123", KEY_A, system="south")


def test_short_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes") as error:
        pseudonymise("MRN-1", b"short-secret")
    assert "short-secret" not in str(error.value)


def test_event_ids_are_deterministic_and_need_identity() -> None:
    assert event_id_for("a", "b") == event_id_for("a", "b")
    assert event_id_for("a", "b") != event_id_for("ab")
    with pytest.raises(ValueError):
        event_id_for("a", "")


@given(st.lists(st.text(min_size=1, max_size=60), min_size=1, max_size=5))
def test_event_ids_are_the_uuid5_of_the_joined_identity(identity: list[str]) -> None:
    # event_id_for hashes from a saved namespace state: the ids stored so far must not change.
    expected = uuid5(PSYMON_NAMESPACE, "\x1f".join(identity))
    assert event_id_for(*identity) == expected
    assert event_id_for(*identity).version == 5


def test_settings_never_print_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cret-" + "x" * 40
    monkeypatch.setenv("PSYMON_PSEUDONYM_KEY", secret)
    settings = Settings()
    assert secret not in repr(settings) and secret not in str(settings.model_dump())
    assert settings.pseudonym_key_bytes == secret.encode()


def test_missing_key_message_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PSYMON_PSEUDONYM_KEY", raising=False)
    with pytest.raises(SettingsError, match="PSYMON_PSEUDONYM_KEY"):
        _ = Settings(_env_file=None).pseudonym_key_bytes
