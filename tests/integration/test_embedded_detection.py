"""Topic repairs run only on psymon's embedded broker (:func:`is_embedded_broker`).

A worker deletes and re-creates a changelog it cannot read only where that
means a restarted memory broker; on a real Kafka cluster a slow fetch must
never cost the patients' states.
"""

from __future__ import annotations

import pytest

from services.embedded import EmbeddedBroker
from services.embedded.topics import TANSU_DEFAULT_CLUSTER, is_embedded_broker

pytestmark = pytest.mark.integration


def test_the_embedded_broker_is_recognised(broker: EmbeddedBroker) -> None:
    assert is_embedded_broker(broker.bootstrap)


def test_another_cluster_or_a_remote_broker_is_not(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.embedded import topics

    real = topics._admin

    def admin_reporting(cluster: str, host: str):  # type: ignore[no-untyped-def]
        class Admin:
            def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
                self.inner = inner

            def describe_cluster(self) -> dict[str, object]:
                answer = dict(self.inner.describe_cluster())
                answer["cluster_id"] = cluster
                answer["brokers"] = [{**b, "host": host} for b in answer["brokers"]]
                return answer

            def close(self) -> None:
                self.inner.close()

        return lambda bootstrap, timeout: Admin(real(bootstrap, timeout))

    monkeypatch.setattr(topics, "_admin", admin_reporting("a-real-cluster", "127.0.0.1"))
    assert not is_embedded_broker(broker.bootstrap)
    monkeypatch.setattr(topics, "_admin", admin_reporting(TANSU_DEFAULT_CLUSTER, "kafka-1"))
    assert not is_embedded_broker(broker.bootstrap)
