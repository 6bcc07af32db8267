"""The trainer's learning options, declared once for both of its command lines.

Kept apart from :mod:`services.trainer` so that the command line can list them
without importing the trainer. Each option's default is the trainer's own
(:class:`services.trainer.TrainerService`).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import click

#: Event time a partition's records may trail the others' before they count as late.
DEFAULT_GRACE = timedelta(hours=1)
#: A trained version needs this many labelled days of each kind (see the model card).
DEFAULT_MIN_POSITIVES = 20
DEFAULT_MIN_NEGATIVES = 500
#: A risk partition read to its end and quiet this long (wall clock) stops holding back.
IDLE_SECONDS = 30.0
#: Days after the horizon a day waits for a late outcome (services.training.Trainer).
DEFAULT_LABEL_GRACE_DAYS = 28


@dataclass(frozen=True)
class TrainingOption:
    """One command-line option of the trainer: ``--flag``, its type, default and lower bound."""

    flag: str
    kind: type[int] | type[float]
    default: int | float
    help: str
    #: The smallest value accepted; ``minimum_open``: that value itself is refused.
    minimum: float = 0
    minimum_open: bool = False

    @property
    def dest(self) -> str:
        """The option's parameter name (``--grace-minutes`` -> ``grace_minutes``)."""
        return self.flag.removeprefix("--").replace("-", "_")

    def check(self, value: float) -> None:
        """Refuse ``value`` below the option's bound, naming the option, the value and the bound."""
        if (
            not math.isfinite(value)
            or value < self.minimum
            or (self.minimum_open and value == self.minimum)
        ):
            bound = f"> {self.minimum:g}" if self.minimum_open else f">= {self.minimum:g}"
            raise ValueError(f"{self.flag} is {value:g}; accepted: a finite number {bound}")


TRAINING_OPTIONS: tuple[TrainingOption, ...] = (
    TrainingOption(
        "--grace-minutes",
        float,
        DEFAULT_GRACE.total_seconds() / 60,
        "Event time a partition may trail the others before its records count as late.",
    ),
    TrainingOption(
        "--publish-every-days",
        float,
        7.0,
        "Event time between two versions.",
        minimum_open=True,
    ),
    TrainingOption(
        "--label-grace-days",
        int,
        DEFAULT_LABEL_GRACE_DAYS,
        "Days after the horizon a day waits for a late outcome.",
    ),
    TrainingOption(
        "--idle-seconds",
        float,
        IDLE_SECONDS,
        "Seconds a risk partition read to its end may stay quiet before it stops holding "
        "back the others.",
    ),
    TrainingOption(
        "--min-positives",
        int,
        DEFAULT_MIN_POSITIVES,
        "Positive days learnt before a trained version may be published.",
    ),
    TrainingOption(
        "--min-negatives",
        int,
        DEFAULT_MIN_NEGATIVES,
        "Negative days learnt before a trained version may be published.",
    ),
)


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Every training option on an argparse parser (``python -m services.trainer``)."""
    for option in TRAINING_OPTIONS:
        parser.add_argument(option.flag, type=option.kind, default=option.default, help=option.help)


def training_click_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Every training option on a click command (``psymon trainer``), in the order listed."""
    for option in reversed(TRAINING_OPTIONS):
        command = click.option(
            option.flag,
            type=option.kind,
            default=option.default,
            show_default=True,
            help=option.help,
        )(command)
    return command


def training_keywords(values: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer's keyword arguments from the options' values (by parameter name), checked.

    >>> training_keywords({o.dest: o.default for o in TRAINING_OPTIONS})["publish_every"]
    datetime.timedelta(days=7)
    >>> training_keywords({o.dest: o.default for o in TRAINING_OPTIONS} | {"grace_minutes": -1})
    Traceback (most recent call last):
    ...
    ValueError: --grace-minutes is -1; accepted: a finite number >= 0
    """
    for option in TRAINING_OPTIONS:
        option.check(values[option.dest])
    return {
        "grace": timedelta(minutes=values["grace_minutes"]),
        "idle_seconds": values["idle_seconds"],
        "publish_every": timedelta(days=values["publish_every_days"]),
        "grace_days": values["label_grace_days"],
        "min_positives": values["min_positives"],
        "min_negatives": values["min_negatives"],
    }
