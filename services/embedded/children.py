"""Child processes that never outlive psymon: start, stop, and nothing left behind.

The embedded broker and test workers are separate processes. Each one is
started in its own process group (so a terminal's Ctrl-C reaches psymon, which
then stops its children in order) and, on Linux, with ``PR_SET_PDEATHSIG`` so
the kernel kills it if its parent dies without cleaning up (SIGKILL, a crash).

``PR_SET_PDEATHSIG`` fires when the *thread* that started the child exits:
start children from a thread that lives as long as they should (the main
thread), or pass ``die_with_parent=False``.

>>> import sys
>>> child = spawn_child([sys.executable, "-c", "import time; time.sleep(30)"])
>>> stop_child(child, timeout=5.0) is not None
True
>>> child.poll() is not None
True
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import IO, Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` that asks the kernel to SIGKILL the child when its parent dies."""

    def arrange() -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody will stop us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return arrange


def spawn_child(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdout: int | IO[Any] | None = subprocess.DEVNULL,
    stderr: int | IO[Any] | None = subprocess.STDOUT,
    die_with_parent: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``args`` in a new process group, bound to this process's life on Linux.

    Parameters
    ----------
    args
        The program and its arguments.
    env, cwd
        As for :class:`subprocess.Popen`; ``env=None`` inherits the environment.
    stdout, stderr
        Where the child's output goes; by default it is discarded.
    die_with_parent
        On Linux, have the kernel SIGKILL the child when the calling thread's
        process dies. Ignored elsewhere.
    """
    preexec = _die_with_parent(os.getpid()) if die_with_parent and sys.platform == "linux" else None
    return subprocess.Popen(
        list(args),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=preexec,
    )


def stop_child(
    child: subprocess.Popen[bytes], *, timeout: float = 10.0, sig: int = signal.SIGTERM
) -> int | None:
    """Stop ``child`` and its process group: ``sig``, wait ``timeout`` s, then SIGKILL.

    Returns the child's exit code (negative: killed by that signal); ``None``
    only if even SIGKILL did not end it within ``timeout`` seconds.
    """
    if child.poll() is not None:
        return child.returncode
    _signal_group(child, sig)
    try:
        return child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(child, signal.SIGKILL)
    try:
        return child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def _signal_group(child: subprocess.Popen[bytes], sig: int) -> None:
    # The child leads its own group (start_new_session), so its pid is the group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)


@contextlib.contextmanager
def signals_handled(
    handler: Callable[[int, FrameType | None], Any], *signums: int
) -> Iterator[None]:
    """Handle ``signums`` with ``handler`` for the duration of a ``with`` block, then as before."""
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
