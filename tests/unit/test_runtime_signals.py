"""A stop of the whole stack is not cut short by another Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal

from services.runtime import shielded_from_signals, stop_signals


def test_a_signal_during_the_stop_is_acknowledged_and_the_stop_goes_on() -> None:
    said: list[str] = []
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    finished = False
    with shielded_from_signals(said.append):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        finished = True
    assert finished
    assert said == ["still stopping: every component gets a clean shutdown first"] * 2
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_sigterm_while_running_stops_like_ctrl_c() -> None:
    try:
        with stop_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not interrupt")
    except KeyboardInterrupt:
        pass
