"""Container health checks for docker-compose.yml: ``python -m services.deploy.healthcheck``.

The psymon image has no curl; these checks use the standard library only.

``http URL``
    Healthy when ``URL`` answers 2xx in time (the API's ``/healthz``).
``reachable``
    Healthy when every broker of ``PSYMON_KAFKA_BOOTSTRAP`` and the database
    server of ``PSYMON_DATABASE_URL`` (when set) accept a TCP connection from
    this container. The worker and the sink use it: they serve no HTTP, and a
    worker cut off from its broker or database is the failure an operator
    must see in ``docker compose ps``. It does not detect a process that is
    alive but stuck.

Exit code 0 means healthy and 1 unhealthy (Docker's convention); the one line
printed says why, and never contains a password or a full database URL.

>>> kafka_endpoints("kafka:9092,kafka-2:9092")
[('kafka', 9092), ('kafka-2', 9092)]
>>> database_endpoints("postgresql://psymon:not-printed@timescaledb:5432/psymon")
[('timescaledb', 5432)]
>>> database_endpoints("host=db1,db2 port=5433,5434 dbname=psymon")
[('db1', 5433), ('db2', 5434)]
"""

from __future__ import annotations

import argparse
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

import psycopg
from psycopg.conninfo import conninfo_to_dict

from services.settings import SettingsError, load_settings

DEFAULT_TIMEOUT = 5.0
POSTGRES_PORT = 5432


def kafka_endpoints(bootstrap: str) -> list[tuple[str, int]]:
    """The ``(host, port)`` pairs of a ``host:port[,host:port]`` bootstrap list."""
    pairs = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        pairs.append((host, int(port)))
    return pairs


def database_endpoints(url: str) -> list[tuple[str, int]]:
    """The TCP ``(host, port)`` pairs a libpq URL or ``key=value`` string connects to.

    Unix-socket hosts (paths) are left out: there is nothing to reach over TCP.
    """
    params = conninfo_to_dict(url)
    hosts = str(params.get("host") or "localhost").split(",")
    ports = [int(p) for p in str(params.get("port") or POSTGRES_PORT).split(",")]
    if len(ports) == 1:
        ports = ports * len(hosts)
    return [(h, p) for h, p in zip(hosts, ports, strict=False) if h and not h.startswith("/")]


def check_http(url: str, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """``None`` when ``url`` answers 2xx within ``timeout`` seconds, else the problem."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        return f"{url} answered HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return f"{url} did not answer: {reason}"
    if not 200 <= status < 300:
        return f"{url} answered HTTP {status}"
    return None


def check_tcp(what: str, host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """``None`` when ``host:port`` accepts a TCP connection, else the problem (naming ``what``)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as error:
        return f"{what} at {host}:{port} is not reachable: {error.strerror or error}"


def check_reachable(timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """``None`` when the broker and the database of the settings are reachable."""
    settings = load_settings()
    if settings.kafka_bootstrap is None:
        return "PSYMON_KAFKA_BOOTSTRAP is not set; nothing to check"
    targets = [("Kafka broker", h, p) for h, p in kafka_endpoints(settings.kafka_bootstrap)]
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        try:
            targets += [("database", h, p) for h, p in database_endpoints(url)]
        except (psycopg.Error, ValueError):  # not quoted: the URL may hold a password
            return "PSYMON_DATABASE_URL cannot be parsed as a PostgreSQL URL"
    problems = [p for t in targets if (p := check_tcp(*t, timeout=timeout)) is not None]
    return "; ".join(problems) or None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one check; print its verdict; return 0 (healthy) or 1 (unhealthy)."""
    parser = argparse.ArgumentParser(
        prog="python -m services.deploy.healthcheck",
        description="Health checks for psymon's containers (exit 0 healthy, 1 unhealthy).",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds")
    checks = parser.add_subparsers(dest="check", required=True)
    http = checks.add_parser("http", help="the URL answers 2xx")
    http.add_argument("url")
    checks.add_parser(
        "reachable",
        help="the brokers of PSYMON_KAFKA_BOOTSTRAP and the server of PSYMON_DATABASE_URL "
        "accept TCP connections",
    )
    args = parser.parse_args(argv)
    try:
        if args.check == "http":
            problem = check_http(args.url, args.timeout)
        else:
            problem = check_reachable(args.timeout)
    except SettingsError as error:
        problem = str(error)
    if problem is not None:
        print(f"unhealthy: {problem}")
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
