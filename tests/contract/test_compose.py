"""The production form holds together: docker-compose.yml, its image, roles and provisioning.

There is no Docker engine in the test run, so the stack is checked by reading it:

* docker-compose.yml against the Compose Specification's JSON Schema, with
  check-jsonschema (``--builtin-schema vendor.compose-spec``). check-jsonschema
  needs click >= 8.5 and faust needs click < 8.4, so the tool lives in its own
  virtualenv, ``PSYMON_TOOLS_VENV`` (default ``<repo>/.venv-tools``), which
  ``make test`` creates;
* the shape a working stack needs (health checks, start order, scalable
  workers, secrets only from .env, settings that exist, a non-root image);
* the database roles: the init script is parsed, and also run on a real
  PostgreSQL with psymon's real migrations (integration);
* the helpers the containers run (topic creation, health checks) against a real
  broker and real sockets.
"""

from __future__ import annotations

import http.server
import importlib.metadata
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from schemas.identity import MIN_KEY_BYTES
from schemas.topics import ALL_TOPICS
from services.settings import Settings

pytest_plugins = ("tests.integration.pg_fixtures",)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DEPLOY = ROOT / "services" / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
ROLES_SQL = DEPLOY / "initdb" / "100_psymon_roles.sql"
DATASOURCE = ROOT / "dashboards" / "provisioning" / "datasources" / "psymon.yaml"
DASHBOARD_PROVIDER = ROOT / "dashboards" / "provisioning" / "dashboards" / "psymon.yaml"

#: Services that run once and exit; every other service runs for good.
ONE_SHOTS = {"topics", "migrate"}
#: Services that run the psymon image.
PSYMON_SERVICES = {"topics", "migrate", "worker", "trainer", "sink", "api"}
GRAFANA_ROLE = "psymon_grafana"
OWNER_ROLE = "psymon"

#: ``${NAME}``, ``${NAME:-default}``, ``${NAME:?message}``... but not the escaped ``$${``.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)((?::?[-?+])[^}]*)?\}")
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|_KEY$|TOKEN$)")


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as data (YAML anchors and merge keys resolved)."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def variables_used(compose: dict[str, Any]) -> set[str]:
    """Every ``${NAME}`` docker compose will fill in (comments are not interpolated)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(key)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str):
            found.update(m.group(1) for m in VARIABLE.finditer(node))

    walk(compose)
    return found


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def settings_variables() -> set[str]:
    return {f"PSYMON_{name.upper()}" for name in Settings.model_fields}


def tools_venv() -> Path:
    return Path(os.environ.get("PSYMON_TOOLS_VENV", ROOT / ".venv-tools"))


def check_jsonschema() -> Path:
    tool = tools_venv() / "bin" / "check-jsonschema"
    if not tool.exists():
        pytest.fail(
            f"check-jsonschema is not installed at {tool}; `make test` installs it in its own "
            "virtualenv (python3 -m venv .venv-tools && .venv-tools/bin/pip install "
            "check-jsonschema; it needs a click version faust cannot share), or point "
            "PSYMON_TOOLS_VENV at a virtualenv that has it"
        )
    return tool


def validate_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(check_jsonschema()), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def sql_statements(path: Path) -> list[str]:
    """The SQL statements of a psql script, comments and psql meta-commands removed.

    A line ending in ``\\gexec`` ends a statement, like ``;``. Statements are
    returned on one line, whitespace collapsed.
    """
    text_lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("--", 1)[0].rstrip()
        if line.lstrip().startswith("\\"):
            continue
        text_lines.append(line.replace("\\gexec", ";"))
    return [" ".join(s.split()) for s in " ".join(text_lines).split(";") if s.strip()]


# --------------------------------------------------------------------------- the file itself


def test_compose_file_follows_the_compose_specification() -> None:
    result = validate_compose(COMPOSE_FILE)
    assert result.returncode == 0, (
        f"docker-compose.yml does not follow the Compose Specification:\n"
        f"{result.stdout}{result.stderr}"
    )


def test_the_schema_check_catches_a_broken_file(tmp_path: Path) -> None:
    """The validator really validates: a wrong depends_on condition is reported."""
    broken = COMPOSE_FILE.read_text(encoding="utf-8").replace(
        "condition: service_healthy", "condition: service_ready"
    )
    path = tmp_path / "docker-compose.yml"
    path.write_text(broken, encoding="utf-8")
    result = validate_compose(path)
    assert result.returncode != 0
    assert "depends_on" in result.stdout


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{name}: image {image!r} is not pinned"


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
                assert volume.endswith(":ro"), f"{name} mounts {source} writable; mount it :ro"


# --------------------------------------------------------------------------- how it runs


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if name in ONE_SHOTS:
            assert service.get("restart") == "no", f"one-shot {name} must not be restarted"
            assert "healthcheck" not in service, f"one-shot {name} needs no healthcheck"
            continue
        assert service.get("restart") in ("unless-stopped", "always"), f"{name}: restart policy"
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] == "CMD", f"{name} runs for good but has no healthcheck"


def test_start_order_waits_for_health_or_completion(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    for name, service in all_services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: use depends_on with conditions"
        for target, rule in depends.items():
            wanted = "service_completed_successfully" if target in ONE_SHOTS else "service_healthy"
            assert rule["condition"] == wanted, f"{name} -> {target}: condition {wanted}"
            if wanted == "service_healthy":
                assert "healthcheck" in all_services[target]
    worker = all_services["worker"]["depends_on"]
    assert set(worker) >= {"topics", "migrate"}, "workers start after topics and schema"
    assert all_services["migrate"]["depends_on"] == {
        "timescaledb": {"condition": "service_healthy"}
    }


def test_workers_can_be_scaled(compose: dict[str, Any]) -> None:
    """``docker compose up --scale worker=N`` needs no fixed name, port or shared volume."""
    for name in ("worker", "sink"):
        service = services(compose)[name]
        assert "container_name" not in service, f"{name}: container_name prevents --scale"
        assert "ports" not in service, f"{name}: a fixed host port prevents --scale"
        assert "hostname" not in service
        assert not service.get("volumes"), f"{name}: replicas would share its volume"


def test_only_loopback_ports_are_published(compose: dict[str, Any]) -> None:
    published = {}
    for name, service in services(compose).items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
            published[name] = port
    assert published == {"api": "127.0.0.1:8000:8000", "grafana": "127.0.0.1:3000:3000"}


def test_psymon_services_run_commands_that_exist(compose: dict[str, Any]) -> None:
    """Each ``psymon ...`` command line names a real command with real options."""
    import importlib.util

    from services.cli import cli

    for name in PSYMON_SERVICES:
        command = services(compose)[name]["command"]
        if command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]) is not None, f"{name}: {command[2]}"
            continue
        assert command[0] == "psymon", f"{name}: {command}"
        node: click.Command = cli
        words = list(command[1:])
        while isinstance(node, click.Group) and words and not words[0].startswith("-"):
            sub = node.commands.get(words[0])
            assert sub is not None, f"{name}: `psymon` has no command {' '.join(command[1:])!r}"
            node, words = sub, words[1:]
        assert not isinstance(node, click.Group), f"{name}: {command} names a group"
        options = {opt for param in node.params for opt in param.opts}
        for word in words:
            if word.startswith("--"):
                assert word in options, f"{name}: psymon {node.name} has no option {word}"


def test_api_healthcheck_targets_its_own_port(compose: dict[str, Any]) -> None:
    api = services(compose)["api"]
    port = api["command"][api["command"].index("--port") + 1]
    assert api["healthcheck"]["test"][-1] == f"http://127.0.0.1:{port}/healthz"
    assert api["ports"] == [f"127.0.0.1:{port}:{port}"]


# --------------------------------------------------------------------------- settings, secrets


def test_every_psymon_variable_is_a_setting(compose: dict[str, Any]) -> None:
    known = settings_variables()
    used: set[str] = set()
    for service in services(compose).values():
        used |= {k for k in environment(service) if k.startswith("PSYMON_")}
    used |= variables_used(compose)
    used |= set(env_example())
    used |= set(re.findall(r"\bPSYMON_[A-Z_]+", DOCKERFILE.read_text(encoding="utf-8")))
    unknown = sorted(v for v in used if v.startswith("PSYMON_") and v not in known)
    assert not unknown, f"not settings of services/settings.py: {unknown}; known: {sorted(known)}"


def test_psymon_services_know_where_kafka_and_the_database_are(compose: dict[str, Any]) -> None:
    for name in PSYMON_SERVICES:
        env = environment(services(compose)[name])
        assert env["PSYMON_KAFKA_BOOTSTRAP"] == "kafka:9092", name
        assert env["PSYMON_DATABASE_URL"].startswith("postgresql://psymon:${"), name
        assert env["PSYMON_DATABASE_URL"].endswith("@timescaledb:5432/psymon"), name
    listeners = environment(services(compose)["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    assert "PLAINTEXT://kafka:9092" in listeners.split(",")
    assert environment(services(compose)["timescaledb"])["POSTGRES_DB"] == "psymon"


def test_no_secret_is_written_in_the_compose_file(compose: dict[str, Any]) -> None:
    """Every password or key is one ``${VAR:?message}``: from .env, and required."""
    for name, service in services(compose).items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                match = VARIABLE.fullmatch(value)
                assert match, f"{name}: {key} must come from .env as ${{VAR:?message}}"
                assert (match.group(2) or "").startswith(":?"), (
                    f"{name}: {key} must be required (${{{match.group(1)}:?message}}) so that "
                    "a missing secret stops `docker compose up`"
                )
            for userinfo in re.findall(r"://[^/@\s]+:([^@\s]+)@", value):
                assert VARIABLE.fullmatch(userinfo), f"{name}: {key} holds a literal password"
        assert "env_file" not in service, f"{name}: env_file would hand it every secret of .env"


def test_each_secret_reaches_only_the_services_that_use_it(compose: dict[str, Any]) -> None:
    holders: dict[str, set[str]] = {}
    for name, service in services(compose).items():
        for value in environment(service).values():
            for match in VARIABLE.finditer(value):
                if SECRET_NAME.search(match.group(1)):
                    holders.setdefault(match.group(1), set()).add(name)
    assert holders["DB_SUPERUSER_PASSWORD"] == {"timescaledb"}
    assert holders["GRAFANA_ADMIN_PASSWORD"] == {"grafana"}
    assert holders["DB_GRAFANA_PASSWORD"] == {"timescaledb", "grafana"}
    assert holders["PSYMON_PSEUDONYM_KEY"] == {"api"}
    assert holders["DB_PSYMON_PASSWORD"] == PSYMON_SERVICES | {"timescaledb"}


def test_env_example_lists_every_variable_with_fake_secrets(compose: dict[str, Any]) -> None:
    needed = variables_used(compose)
    assert needed >= {"DB_PSYMON_PASSWORD", "PSYMON_PSEUDONYM_KEY"}
    example = env_example()
    missing = sorted(needed - set(example))
    assert not missing, f".env.example lacks {missing}"
    for name, value in example.items():
        if SECRET_NAME.search(name):
            assert value.startswith("change-me"), f".env.example: {name} must be a placeholder"
    # The placeholder key is too short for psymon to accept, so it cannot go live by mistake.
    assert len(example["PSYMON_PSEUDONYM_KEY"].encode()) < MIN_KEY_BYTES


def test_env_files_stay_out_of_git_and_the_image() -> None:
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored
    rules = [r for r in DOCKERIGNORE.read_text(encoding="utf-8").splitlines() if r.strip()]
    rules = [r for r in rules if not r.startswith("#")]
    assert rules[0] == "*", "the build context must start from nothing"
    assert "**/.env" in rules
    assert not any(r.startswith("!") and (".env" in r or ".psymon" in r) for r in rules)


# --------------------------------------------------------------------------- the image


def test_image_runs_as_non_root_without_secrets() -> None:
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    users = [line.split()[1] for line in lines[last_from:] if line.upper().startswith("USER ")]
    assert users, "the final stage has no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"the image runs as {users[-1]}"
    for line in lines:
        keyword = line.split()[0].upper()
        if keyword in ("ENV", "ARG"):
            assert not SECRET_NAME.search(line.upper().replace("PSYMON_DATA_DIR", "")), line
        if keyword in ("COPY", "ADD"):
            assert ".env" not in line, line
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in lines


# --------------------------------------------------------------------------- Grafana


def test_grafana_is_closed_to_anonymous_users(compose: dict[str, Any]) -> None:
    env = environment(services(compose)["grafana"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_SNAPSHOTS_EXTERNAL_ENABLED"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_grafana_reads_through_the_read_only_role(compose: dict[str, Any]) -> None:
    provisioning = yaml.safe_load(DATASOURCE.read_text(encoding="utf-8"))
    (source,) = provisioning["datasources"]
    assert source["user"] == GRAFANA_ROLE
    assert source["url"] == "timescaledb:5432"
    assert source["jsonData"]["database"] == "psymon"
    password = VARIABLE.fullmatch(source["secureJsonData"]["password"])
    assert password, "the datasource password must come from the environment"
    grafana_env = environment(services(compose)["grafana"])
    assert password.group(1) in grafana_env, "Grafana's container must receive that variable"
    roles_env = environment(services(compose)["timescaledb"])
    assert grafana_env[password.group(1)] == roles_env[password.group(1)]
    assert f"\\getenv grafana_password {password.group(1)}" in ROLES_SQL.read_text("utf-8")


def test_dashboards_are_provisioned_from_the_mounted_folder(compose: dict[str, Any]) -> None:
    provider = yaml.safe_load(DASHBOARD_PROVIDER.read_text(encoding="utf-8"))
    (entry,) = provider["providers"]
    path = entry["options"]["path"]
    mounts = dict(
        (v.split(":")[1], v.split(":")[0]) for v in services(compose)["grafana"]["volumes"]
    )
    assert mounts[path] == "./dashboards/json"
    assert mounts["/etc/grafana/provisioning/dashboards"] == "./dashboards/provisioning/dashboards"
    assert (ROOT / "dashboards" / "json" / ".gitkeep").exists()
    assert entry["allowUiUpdates"] is False


# --------------------------------------------------------------------------- database roles


def grants_to(role: str) -> list[tuple[str, str]]:
    """``(privileges, object)`` of every GRANT ... TO ``role`` in the roles script."""
    grants = []
    for statement in sql_statements(ROLES_SQL):
        match = re.search(rf"\bGRANT (.+?) ON (.+?) TO {role}\b", statement, re.IGNORECASE)
        if match:
            grants.append((match.group(1).upper(), " ".join(match.group(2).upper().split())))
    return grants


def test_grafana_role_is_granted_select_and_nothing_more() -> None:
    grants = grants_to(GRAFANA_ROLE)
    # TABLES first: "ALL TABLES IN SCHEMA public" names a schema too.
    allowed = {"TABLES": "SELECT", "DATABASE": "CONNECT", "SCHEMA": "USAGE"}
    kinds = set()
    for privileges, target in grants:
        kind = next((k for k in allowed if k in target.split()), None)
        assert kind is not None, f"grant on an unexpected object: {privileges} ON {target}"
        assert privileges == allowed[kind], f"{GRAFANA_ROLE} gets {privileges} ON {target}"
        kinds.add(kind)
    assert kinds == set(allowed), f"{GRAFANA_ROLE} needs CONNECT, USAGE and SELECT: {grants}"
    statements = sql_statements(ROLES_SQL)
    assert any(
        s.upper().startswith("ALTER DEFAULT PRIVILEGES FOR ROLE PSYMON IN SCHEMA PUBLIC GRANT")
        and s.upper().endswith(f"SELECT ON TABLES TO {GRAFANA_ROLE.upper()}")
        for s in statements
    ), "tables and views created later must be readable (and only readable) too"
    # No membership in another role (it would inherit that role's rights).
    memberships = [s for s in statements if re.match(rf"GRANT \w+ TO {GRAFANA_ROLE}\b", s, re.I)]
    assert not memberships
    (alter,) = [s for s in statements if s.startswith(f"ALTER ROLE {GRAFANA_ROLE} WITH")]
    for power in ("SUPERUSER", "CREATEDB", "CREATEROLE", "REPLICATION", "BYPASSRLS"):
        assert f"NO{power}" in alter.split(), f"{GRAFANA_ROLE} must be NO{power}"


def test_owner_role_has_no_cluster_powers() -> None:
    (alter,) = [s for s in sql_statements(ROLES_SQL) if s.startswith(f"ALTER ROLE {OWNER_ROLE} ")]
    for power in ("SUPERUSER", "CREATEDB", "CREATEROLE", "REPLICATION", "BYPASSRLS"):
        assert f"NO{power}" in alter.split()


def psql() -> Path:
    from services.embedded.postgres import postgres_bin_dir

    return postgres_bin_dir() / "psql"


def run_roles_script(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    return subprocess.run(
        [str(psql()), "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-f", str(ROLES_SQL), url],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def login(url: str, role: str, password: str) -> str:
    parts = conninfo_to_dict(url)
    parts.update(user=role, password=password)
    return make_conninfo(**{k: str(v) for k, v in parts.items()})


@pytest.fixture
def roles_database(embedded_pg: Any) -> Iterator[tuple[str, str, str]]:
    """A fresh database with the roles script applied: (superuser URL, owner pw, grafana pw)."""
    from tests.integration.pg_fixtures import create_database, drop_database

    name = create_database(embedded_pg, prefix="roles")
    url = embedded_pg.url_for(name)
    owner, grafana = uuid.uuid4().hex, uuid.uuid4().hex
    try:
        done = run_roles_script(url, DB_PSYMON_PASSWORD=owner, DB_GRAFANA_PASSWORD=grafana)
        assert done.returncode == 0, done.stderr
        yield url, owner, grafana
    finally:
        drop_database(embedded_pg, name)
        with psycopg.connect(embedded_pg.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {GRAFANA_ROLE}, {OWNER_ROLE}")


@pytest.mark.integration
def test_roles_on_a_real_server_after_real_migrations(
    roles_database: tuple[str, str, str],
) -> None:
    from services.store.migrate import migrate

    url, owner, grafana = roles_database
    with psycopg.connect(login(url, OWNER_ROLE, owner), autocommit=True) as conn:
        assert migrate(conn), "the owner role can create psymon's schema"
    # Re-run on the live database, as when rotating passwords (docs/operations-deploy.md).
    owner, grafana = uuid.uuid4().hex, uuid.uuid4().hex
    again = run_roles_script(url, DB_PSYMON_PASSWORD=owner, DB_GRAFANA_PASSWORD=grafana)
    assert again.returncode == 0, again.stderr
    with psycopg.connect(login(url, GRAFANA_ROLE, grafana), autocommit=True) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        views = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.views WHERE table_schema = 'public'"
            ).fetchall()
        ]
        assert len(views) >= 10
        for view in views:
            conn.execute(f"SELECT * FROM {view} LIMIT 0")  # every dashboard view is readable
        writable = conn.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
            "AND c.relkind IN ('r', 'p', 'v', 'm') AND has_table_privilege(c.oid, "
            "'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')"
        ).fetchall()
        assert writable == [], f"{GRAFANA_ROLE} may change {writable}"
        # The read-only default is not the barrier (a session can lift it); privileges are.
        conn.execute("SET default_transaction_read_only = off")
        for attempt in (
            "DELETE FROM clinical_scores",
            "TRUNCATE clinical_scores",
            "CREATE TABLE public.scratch (i int)",
            "CREATE TEMP TABLE scratch (i int)",
            "SELECT psymon_ensure_partitions(now(), now())",
            f"SET ROLE {OWNER_ROLE}",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(attempt)


@pytest.mark.integration
def test_roles_script_names_a_missing_password(embedded_pg: Any) -> None:
    from tests.integration.pg_fixtures import create_database, drop_database

    name = create_database(embedded_pg, prefix="roles")
    try:
        done = run_roles_script(embedded_pg.url_for(name), DB_GRAFANA_PASSWORD="x" * 32)
    finally:
        drop_database(embedded_pg, name)
    assert done.returncode != 0
    assert "DB_PSYMON_PASSWORD is not set" in done.stderr


# --------------------------------------------------------------------------- topics service


def run_module(module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` with only the PSYMON_ settings given.

    It runs outside the repository: psymon also reads ``./.env``, and the
    operator's .env for docker compose lives in the repository root.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PSYMON_")}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.integration
def test_topics_service_creates_every_topic_and_refuses_another_count() -> None:
    from services.embedded import EmbeddedBroker, topic_partitions

    with EmbeddedBroker() as broker:
        env = {"PSYMON_KAFKA_BOOTSTRAP": broker.bootstrap, "PSYMON_PARTITIONS": "3"}
        first = run_module("services.deploy.topics", **env)
        assert first.returncode == 0, first.stderr
        assert topic_partitions(broker.bootstrap, ALL_TOPICS) == dict.fromkeys(ALL_TOPICS, 3)
        again = run_module("services.deploy.topics", **env)
        assert again.returncode == 0, again.stderr
        other = run_module("services.deploy.topics", **{**env, "PSYMON_PARTITIONS": "5"})
    assert other.returncode == 1
    assert "PSYMON_PARTITIONS" in other.stderr


def test_topics_service_needs_a_broker_address() -> None:
    done = run_module("services.deploy.topics")
    assert done.returncode == 2
    assert "PSYMON_KAFKA_BOOTSTRAP is not set" in done.stderr


# --------------------------------------------------------------------------- health checks


@pytest.fixture
def http_server() -> Iterator[str]:
    """A local HTTP server: /healthz answers 200, anything else 503."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_http_healthcheck(http_server: str) -> None:
    ok = run_module("services.deploy.healthcheck", "http", f"{http_server}/healthz")
    assert (ok.returncode, ok.stdout.strip()) == (0, "healthy")
    failing = run_module("services.deploy.healthcheck", "http", f"{http_server}/broken")
    assert failing.returncode == 1
    assert "HTTP 503" in failing.stdout
    down = run_module(
        "services.deploy.healthcheck",
        "--timeout",
        "2",
        "http",
        f"http://127.0.0.1:{closed_port()}/",
    )
    assert down.returncode == 1


def test_reachable_healthcheck_never_prints_the_password() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        secret = "not-to-be-printed-" + uuid.uuid4().hex
        up = run_module(
            "services.deploy.healthcheck",
            "reachable",
            PSYMON_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}",
            PSYMON_DATABASE_URL=f"postgresql://psymon:{secret}@127.0.0.1:{port}/psymon",
        )
        assert (up.returncode, up.stdout.strip()) == (0, "healthy")
        db_port = closed_port()
        down = run_module(
            "services.deploy.healthcheck",
            "reachable",
            PSYMON_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}",
            PSYMON_DATABASE_URL=f"postgresql://psymon:{secret}@127.0.0.1:{db_port}/psymon",
        )
    assert down.returncode == 1
    assert f"database at 127.0.0.1:{db_port} is not reachable" in down.stdout
    assert secret not in down.stdout + down.stderr


def test_tools_venv_is_apart_from_the_project_venv() -> None:
    """check-jsonschema must not be installed where it would upgrade faust's click."""
    click_version = tuple(int(p) for p in importlib.metadata.version("click").split(".")[:2])
    assert click_version < (8, 4), "the project venv's click must stay below 8.4 for faust"
    assert shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) is None
