"""The native stack's pure parts (starting servers is covered by the integration suites)."""

from __future__ import annotations

import base64
from pathlib import Path

from streams.settings import Settings
from streams.tools.stack import Stack, StackSettings


def test_cluster_ids_are_kafka_shaped_and_never_look_like_an_option(tmp_path: Path) -> None:
    settings, local = Settings(state_dir=tmp_path), StackSettings()
    # Test stacks are named after the pid: cover far more names than pids CI sees.
    ids = {Stack(settings, name=f"test-{pid}", local=local).cluster_id() for pid in range(5000)}
    assert len(ids) == 5000
    for cid in ids:
        assert not cid.startswith("-"), cid
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16
    # Stable for a name: a restarted stack reuses its formatted storage.
    assert Stack(settings, name="default").cluster_id() == Stack(settings, "default").cluster_id()


def test_the_pom_that_resolves_the_kafka_jars_is_found_from_a_checkout() -> None:
    # A fresh machine has no cached jars: the stack must find deploy/local/pom.xml.
    from streams.tools import stack

    assert stack._pom_path() == Path(__file__).resolve().parents[4] / "deploy" / "local" / "pom.xml"
