"""The review queue's bookkeeping: commit points, newest wins, decided items, filters."""

from __future__ import annotations

from streams.console.queue import DecisionRate, Filters, Ref, ReviewQueue
from tests.unit.streams.console.records import rec

PR, LR = "product-review", "listing-review"


def test_commit_point_is_the_lowest_pending_offset_or_the_end_read() -> None:
    q = ReviewQueue(100)
    for off, pid in enumerate(["p0", "p1", "p2"]):
        assert q.add(rec(pid), Ref(PR, 0, off))
    assert q.commit_points() == {(PR, 0): 0}
    q.mark_decided("p1", "a" * 64)
    assert q.commit_points() == {(PR, 0): 0}, "p0 is still undecided"
    q.mark_decided("p0", "a" * 64)
    assert q.commit_points() == {(PR, 0): 2}
    q.mark_decided("p2", "a" * 64)
    assert q.commit_points() == {(PR, 0): 3}
    assert len(q) == 0


def test_a_skipped_record_moves_the_commit_point() -> None:
    q = ReviewQueue(100)
    q.skip(Ref(PR, 1, 7))
    assert q.commit_points() == {(PR, 1): 8}


def test_newest_listing_of_a_product_wins_and_frees_the_older_offset() -> None:
    q = ReviewQueue(100)
    q.add(rec("p", sha="a", at_s=1), Ref(PR, 0, 0))
    q.add(rec("p", sha="b", at_s=2), Ref(PR, 0, 1))
    assert len(q) == 1
    item = q.get("p")
    assert item is not None
    assert item.record.image_sha256 == "b" * 64
    assert q.commit_points() == {(PR, 0): 1}
    # An older listing read later (another partition's order) does not replace it.
    assert not q.add(rec("p", sha="c", at_s=0), Ref(LR, 0, 0))
    assert q.get("p").record.image_sha256 == "b" * 64  # type: ignore[union-attr]
    assert q.commit_points() == {(PR, 0): 1, (LR, 0): 1}


def test_the_same_listing_on_both_topics_is_one_item_held_by_both_offsets() -> None:
    q = ReviewQueue(100)
    flags = ("low_confidence", "duplicate_image")
    q.add(rec("p", event_id="e", flags=flags), Ref(PR, 0, 4))
    q.add(rec("p", event_id="e", flags=flags), Ref(LR, 2, 9))
    assert len(q) == 1
    assert q.commit_points() == {(PR, 0): 4, (LR, 2): 9}
    q.mark_decided("p", "a" * 64)
    assert q.commit_points() == {(PR, 0): 5, (LR, 2): 10}


def test_decided_before_it_is_read_is_never_queued() -> None:
    q = ReviewQueue(100)
    q.mark_decided("p", "a" * 64)
    assert not q.add(rec("p"), Ref(PR, 0, 0))
    assert len(q) == 0
    assert q.commit_points() == {(PR, 0): 1}
    # The same product with another photo still needs a decision.
    assert q.add(rec("p", sha="b"), Ref(PR, 0, 1))


def test_a_record_read_again_after_a_seek_back_is_not_counted_twice() -> None:
    q = ReviewQueue(100)
    q.add(rec("p"), Ref(PR, 0, 0))
    assert not q.add(rec("p"), Ref(PR, 0, 0))
    assert len(q) == 1


def test_revoked_partitions_are_forgotten() -> None:
    q = ReviewQueue(100)
    q.add(rec("p0"), Ref(PR, 0, 0))
    q.add(rec("p1"), Ref(PR, 1, 0))
    q.drop_partitions({(PR, 0)})
    assert [i.product_id for i in q] == ["p1"]
    assert q.commit_points() == {(PR, 1): 0}


def test_full_at_max_items() -> None:
    q = ReviewQueue(2)
    q.add(rec("p0"), Ref(PR, 0, 0))
    assert not q.full
    q.add(rec("p1"), Ref(PR, 0, 1))
    assert q.full


def test_filters_pages_and_counts_follow_the_queue() -> None:
    q = ReviewQueue(1000)
    for i in range(120):
        flags = ("duplicate_image",) if i % 3 == 0 else ("low_confidence",)
        category = "dairy" if i % 2 else "produce"
        q.add(rec(f"p{i}", flags=flags, category=category, seller=f"s{i % 4}"), Ref(PR, 0, i))
    assert q.flags == {"duplicate_image": 40, "low_confidence": 80}
    assert q.categories == {"dairy": 60, "produce": 60}
    page = q.page(Filters(flag="duplicate_image"), 1, 25)
    assert (page.total, page.pages, len(page.items)) == (40, 2, 25)
    assert [i.product_id for i in q.page(Filters(flag="duplicate_image"), 2, 25).items][:2] == [
        "p75",
        "p78",
    ]
    both = q.page(Filters(flag="duplicate_image", category="dairy", seller="s1"), 1, 50)
    assert all(i.seller == "s1" and i.record.category == "dairy" for i in both.items)
    assert both.total == sum(1 for i in range(120) if i % 3 == 0 and i % 2 and i % 4 == 1)
    q.mark_decided("p0", "a" * 64)
    assert q.flags["duplicate_image"] == 39
    assert q.sellers["s0"] == 29


def test_decisions_per_hour_forget_older_ones() -> None:
    rate = DecisionRate()
    for t in (0.0, 10.0, 3000.0):
        rate.add(t)
    assert rate.per_hour(3500.0) == 3
    assert rate.per_hour(3605.0) == 2
