"""Slot grouping, the cluster client's failover budget and slot-safe script calls (no network)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from streams.worker.cache import LabelCache
from streams.worker.recommend import RecommendConfig, _script_chunks
from streams.worker.redisclient import _failover_retry, build_client, group_by_slot, slot_of

CFG = RecommendConfig(prefix="t")


def test_keys_are_grouped_by_slot_in_first_seen_order() -> None:
    keys = [f"t:rec:p{i}" for i in range(200)]
    groups = group_by_slot(keys)
    assert sorted(k for g in groups for k in g) == sorted(keys)
    assert all(len({slot_of(k) for k in g}) == 1 for g in groups)
    assert len({slot_of(g[0]) for g in groups}) == len(groups)
    assert groups[0][0] == keys[0]


def test_an_images_claim_and_result_share_a_slot() -> None:
    cache = LabelCache("redis://127.0.0.1:1/0", ttl_s=1, timeout_ms=10)
    sha = "ab" * 32
    assert cache.image_key(sha) == f"vitrine:img:{{{sha}}}"
    assert slot_of(cache.image_key(sha)) == slot_of(cache.claim_key(sha, "v3"))
    other = "cd" * 32
    assert slot_of(cache.image_key(sha)) != slot_of(cache.image_key(other))


def test_script_calls_on_a_cluster_stay_within_one_slot_and_write_everything() -> None:
    merged = {f"t:rec:p{i}": {f"p{j}": float(i + j) for j in range(i % 7 + 1)} for i in range(300)}
    one = list(_script_chunks(merged, CFG))
    per_slot = list(_script_chunks(merged, CFG, by_slot=True))
    assert len(one) == 1  # one server: one call for a small batch, as before
    assert len(per_slot) == len(group_by_slot(merged))
    written: dict[str, dict[str, float]] = {}
    for keys, args in per_slot:
        assert len({slot_of(k) for k in keys}) == 1
        assert args[:1] == [CFG.max_members]
        a = 1
        for key in keys:
            n = int(args[a])
            pairs = args[a + 1 : a + 1 + 2 * n]
            written[key] = {str(m): float(v) for m, v in zip(pairs[::2], pairs[1::2], strict=True)}
            a += 1 + 2 * n
        assert a == len(args)
    assert written == merged


def test_the_failover_budget_sleeps_at_least_as_long_as_asked() -> None:
    for ms in (0, 500, 2_000, 20_000):
        retry = _failover_retry(ms)
        slept = sum(retry._backoff.compute(i) for i in range(1, retry.get_retries() + 1))
        assert ms / 1000 <= slept <= ms / 1000 + 0.5, (ms, slept)


def test_the_cluster_setting_builds_a_cluster_client() -> None:
    cluster = build_client("redis://127.0.0.1:1/0", cluster=True, timeout_ms=10)
    assert isinstance(cluster, RedisCluster)
    single = build_client("redis://127.0.0.1:1/0", cluster=False, timeout_ms=10)
    assert isinstance(single, Redis)
    assert not isinstance(single, RedisCluster)
