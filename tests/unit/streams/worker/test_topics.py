"""The topic table: one list that the worker, the stack and the test helpers all derive from."""

from __future__ import annotations

import dataclasses

import faust

from streams.settings import KafkaSettings, RecommendSettings, Settings, TopicSettings
from streams.tools.workerproc import isolated_topics
from streams.worker.topics import TOPICS, Topics, topic_configs, topic_partitions


def test_the_table_and_the_topics_record_name_the_same_topics() -> None:
    assert [t.field for t in TOPICS] == [f.name for f in dataclasses.fields(Topics)]


def test_the_record_topics_are_compacted_and_the_orders_also_deleted() -> None:
    s = Settings(recommend=RecommendSettings(history_days=400))
    assert topic_configs(s) == {
        "product-labels": {"cleanup.policy": "compact"},
        "orders-enriched": {"cleanup.policy": "compact,delete", "retention.ms": "34560000000"},
        "category-sales": {"cleanup.policy": "compact"},
        "product-embeddings": {"cleanup.policy": "compact"},
        "listing-fingerprints": {"cleanup.policy": "compact"},
        "label-corrections": {"cleanup.policy": "compact"},
    }


NAMED_BY_SETTINGS = {
    f for f, info in TopicSettings.model_fields.items() if isinstance(info.default, str)
}


def test_the_stack_creates_every_topic_named_by_a_setting() -> None:
    s = Settings(topics=TopicSettings(partitions=3))
    assert topic_partitions(s) == {getattr(s.topics, f): 3 for f in NAMED_BY_SETTINGS}
    assert "vitrine-sales-deltas" not in topic_partitions(s)  # the worker's own


def test_a_test_gets_its_own_copy_of_every_topic() -> None:
    names = isolated_topics("t1")
    assert set(names) == NAMED_BY_SETTINGS
    assert names["product_images"] == "product-images-t1"
    assert names["orders_dlq"] == "orders.dlq-t1"


def test_the_worker_declares_each_topic_with_its_policy() -> None:
    s = Settings(topics=TopicSettings(partitions=3), kafka=KafkaSettings(app_id="shop"))
    topics = Topics.on(faust.App("shop", broker="kafka://127.0.0.1:1"), s)
    assert topics.deltas.get_topic_name() == "shop-sales-deltas"
    assert topics.labels.compacting
    assert not topics.images.compacting
    assert topics.enriched.deleting
    assert topics.enriched.retention is not None
    assert topics.enriched.retention.total_seconds() == s.recommend.history_days * 86_400
    assert {getattr(topics, f.name).partitions for f in dataclasses.fields(topics)} == {3}
    assert topics.corrections.compacting
    # Faust declares the agents' inputs; the runtime declares the rest.
    assert topics.images not in topics.outputs
    assert topics.corrections not in topics.outputs
    assert len(topics.outputs) == len(TOPICS) - 2
