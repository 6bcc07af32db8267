"""psymon's settings: one frozen class, read from the environment in one place.

Every variable has the prefix ``PSYMON_`` and may also come from a ``.env``
file in the working directory. A missing or malformed setting stops the
program at start with a message naming the variable and what it expects.
Secrets (the pseudonym key, a database URL with its password) are
``SecretStr`` and never printed.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.identity import MIN_KEY_BYTES


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message says which and what it expects."""


class Settings(BaseSettings):
    """Configuration of every psymon process.

    Attributes
    ----------
    kafka_bootstrap
        ``PSYMON_KAFKA_BOOTSTRAP``: host:port of a Kafka-compatible broker. Unset:
        ``psymon up`` starts the embedded broker; ``psymon broker`` listens on
        127.0.0.1:9092.
    database_url
        ``PSYMON_DATABASE_URL``: a PostgreSQL URL. Unset: the embedded PostgreSQL
        under ``data_dir``, started on demand.
    data_dir
        ``PSYMON_DATA_DIR``: where embedded data lives between runs.
    pseudonym_key
        ``PSYMON_PSEUDONYM_KEY``: the secret that turns source identifiers into
        pseudonyms; at least 32 characters; required unless running the demo.
    api_tokens_file
        ``PSYMON_API_TOKENS_FILE``: hashed API tokens with their roles.
    partitions
        ``PSYMON_PARTITIONS``: partitions per topic when psymon creates topics.
    core_config_file
        ``PSYMON_CORE_CONFIG_FILE``: rule and model thresholds (JSON); unset: the
        built-in defaults.
    """

    model_config = SettingsConfigDict(
        env_prefix="PSYMON_", env_file=".env", frozen=True, extra="ignore"
    )

    kafka_bootstrap: str | None = Field(
        default=None,
        pattern=r"^[\w.\-]+:\d{1,5}(,[\w.\-]+:\d{1,5})*$",
        description="host:port[,host:port] of a Kafka-compatible broker. Unset: `psymon up` "
        "starts the embedded broker; `psymon broker` listens on 127.0.0.1:9092.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL/TimescaleDB URL (secret: it may hold a password). Unset: the "
        "embedded PostgreSQL under PSYMON_DATA_DIR, started on demand.",
    )
    data_dir: Path = Field(
        default=Path(".psymon"),
        description="Where embedded data (PostgreSQL, worker files, tokens) lives between runs.",
    )
    pseudonym_key: SecretStr | None = Field(
        default=None,
        description="Secret (>= 32 characters) that turns source identifiers into pseudonyms "
        "with a keyed HMAC; required to ingest; never printed. Changing it changes every "
        "pseudonym.",
    )
    api_tokens_file: Path | None = Field(
        default=None,
        description="JSON file of hashed API tokens with roles (create with `psymon tokens "
        "add`). Unset: PSYMON_DATA_DIR/api-tokens.json.",
    )
    partitions: int = Field(
        default=4,
        ge=1,
        le=1024,
        description="Partitions per topic when psymon creates topics; the most workers that "
        "can share the work.",
    )
    core_config_file: Path | None = Field(
        default=None,
        description="JSON file of rule and model thresholds (the core's configuration); "
        "unset: the built-in, versioned defaults.",
    )

    @property
    def tokens_path(self) -> Path:
        """Where API tokens are kept: ``PSYMON_API_TOKENS_FILE`` or under the data dir."""
        return self.api_tokens_file or self.data_dir / "api-tokens.json"

    @cached_property
    def pseudonym_key_bytes(self) -> bytes:
        """The pseudonym key as bytes; raises :class:`SettingsError` when unusable."""
        if self.pseudonym_key is None:
            raise SettingsError(
                "PSYMON_PSEUDONYM_KEY is not set; it is required to turn source identifiers "
                f"into pseudonyms. Expected: a secret of at least {MIN_KEY_BYTES} characters, "
                "e.g. from: python -c 'import secrets; print(secrets.token_hex(32))'"
            )
        key = self.pseudonym_key.get_secret_value().encode()
        if len(key) < MIN_KEY_BYTES:
            raise SettingsError(
                f"PSYMON_PSEUDONYM_KEY is too short ({len(key)} characters); "
                f"expected at least {MIN_KEY_BYTES}"
            )
        return key


def load_settings() -> Settings:
    """Read the settings, turning pydantic's errors into one message per variable."""
    try:
        return Settings()
    except ValidationError as error:
        lines = []
        for item in error.errors(include_url=False):
            name = "PSYMON_" + "_".join(str(p) for p in item["loc"]).upper()
            lines.append(f"{name}: {item['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
