"""Create psymon's topics before anything produces to them: ``python -m services.deploy.topics``.

The ``topics`` service of docker-compose.yml runs this once, after Kafka is
healthy and before the API, the sink and the workers start. Each topic of
:data:`schemas.topics.ALL_TOPICS` is created with ``PSYMON_PARTITIONS``
partitions; topics that exist are checked, not changed. The broker has
``auto.create.topics.enable=false``, so a producer that runs ahead of this
fails loudly instead of creating a topic with the wrong partition count.

Reads ``PSYMON_KAFKA_BOOTSTRAP`` (required) and ``PSYMON_PARTITIONS``.
Exit codes: 0 all topics are there with the configured count; 1 the broker
cannot be reached, or a topic exists with another count; 2 a setting is
missing or malformed.

>>> main(["--replication", "0"])  # a usage error stops before reaching the broker
Traceback (most recent call last):
...
SystemExit: 2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from schemas.topics import ALL_TOPICS
from services.embedded.broker import BrokerError, ensure_topics
from services.settings import SettingsError, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Create the missing topics, check the others; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m services.deploy.topics",
        description="Create psymon's topics with PSYMON_PARTITIONS partitions on the broker at "
        "PSYMON_KAFKA_BOOTSTRAP; check the partition count of those that exist.",
    )
    parser.add_argument(
        "--replication",
        type=int,
        default=1,
        help="Replicas per partition (default 1: one broker). At most the number of brokers.",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="Seconds to wait for the broker to answer (default 120).",
    )
    args = parser.parse_args(argv)
    if args.replication < 1:
        parser.error(f"--replication must be at least 1, got {args.replication}")
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"topics: {error}", file=sys.stderr)
        return 2
    if settings.kafka_bootstrap is None:
        print(
            "topics: PSYMON_KAFKA_BOOTSTRAP is not set; expected host:port of the Kafka broker",
            file=sys.stderr,
        )
        return 2
    try:
        counts = ensure_topics(
            settings.kafka_bootstrap,
            settings.partitions,
            ALL_TOPICS,
            replication=args.replication,
            timeout=args.timeout,
        )
    except BrokerError as error:  # TopicPartitionMismatch included
        print(f"topics: {error}", file=sys.stderr)
        return 1
    for topic in ALL_TOPICS:
        print(f"{topic}: {counts[topic]} partitions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
