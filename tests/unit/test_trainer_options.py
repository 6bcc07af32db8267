"""``psymon trainer`` and ``python -m services.trainer`` take the same learning options.

Both are built from :data:`services.trainer_options.TRAINING_OPTIONS`, so an
option, its default or its bound cannot differ between the two.
"""

from __future__ import annotations

import argparse
import inspect

import pytest
from click.testing import CliRunner

from services.cli import cli
from services.trainer_options import (
    DEFAULT_LABEL_GRACE_DAYS,
    TRAINING_OPTIONS,
    add_training_arguments,
    training_keywords,
)
from services.training import Trainer


def test_both_command_lines_list_every_option_with_the_same_default() -> None:
    parser = argparse.ArgumentParser()
    add_training_arguments(parser)
    parsed = vars(parser.parse_args([]))
    usage = CliRunner().invoke(cli, ["trainer", "--help"]).output
    for option in TRAINING_OPTIONS:
        assert parsed[option.dest] == option.default
        assert option.flag in usage
    assert training_keywords(parsed)["grace_days"] == DEFAULT_LABEL_GRACE_DAYS


def test_the_label_grace_default_is_the_learners_own() -> None:
    default = inspect.signature(Trainer).parameters["grace_days"].default
    assert default == DEFAULT_LABEL_GRACE_DAYS


@pytest.mark.parametrize(
    ("flag", "value", "accepted"),
    [
        ("--publish-every-days", "0", "> 0"),
        ("--grace-minutes", "-5", ">= 0"),
        ("--publish-every-days", "inf", "> 0"),
        ("--idle-seconds", "nan", ">= 0"),
    ],
)
def test_a_value_out_of_bounds_is_refused_naming_the_option(
    flag: str, value: str, accepted: str
) -> None:
    result = CliRunner().invoke(cli, ["trainer", flag, value])
    assert result.exit_code == 2
    assert f"{flag} is {value}; accepted: a finite number {accepted}" in result.output
