"""One inference per new image, in this process and across workers.

In the process (:class:`SingleFlight`), an image that two batches in flight both miss is inferred by
the first; the second awaits its flight. A flight stays open from the start of
the inference until its result is in Redis, when :meth:`SingleFlight.forget`
closes it; a failed image closes at once (it is never cached), and a flight
cancelled (its inference failed) sends its waiters to infer the image
themselves.

Across workers (:class:`ImageClaims`), a batch claims the images it is about
to infer in Redis (``SET NX PX``, ``image_claim_ttl_ms``) and, in the same
round trip, reads the results written since its cache lookup: a holder that
finished in between has deleted its claim, so the claim alone would be won
again and the image inferred twice. It leaves to their holders the images
another worker has claimed: it polls Redis (every 20 ms)
until their results are written. A claim is deleted with its result's write
(:meth:`~streams.worker.cache.LabelCache.put`), or released at once when the
image fails, so a claim gone with no result means its holder gave up, and the
waiter infers the image itself; a holder that dies leaves its claims to
expire, which bounds the wait. With Redis down nothing is claimed and every
worker infers its own misses.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence

from inference.serving.errors import InferenceError
from streams.worker.cache import CacheUnavailable, LabelCache
from streams.worker.imageresult import ImageResult

__all__ = ["ImageClaims", "Outcome", "SingleFlight"]

logger = logging.getLogger(__name__)

#: What one image's inference gives: its result, or why it has none.
Outcome = ImageResult | InferenceError


class SingleFlight:
    """The images this process is inferring, or has inferred and Redis does not hold yet."""

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[Outcome]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def under_way(self, sha: str) -> asyncio.Future[Outcome] | None:
        """The open flight of ``sha`` (another batch's inference), or None."""
        return self._flights.get(sha)

    def start(self, hashes: Iterable[str]) -> dict[str, asyncio.Future[Outcome]]:
        """Open a flight for each of ``hashes``, which this batch will infer."""
        loop = asyncio.get_running_loop()
        owned = {sha: loop.create_future() for sha in hashes}
        self._flights.update(owned)
        return owned

    def finish(
        self, owned: Mapping[str, asyncio.Future[Outcome]], outcomes: Mapping[str, Outcome]
    ) -> None:
        """Hand ``outcomes`` to the waiters of ``owned``.

        A result stays open (other batches take it) until :meth:`forget`; an
        error closes at once. A flight with no outcome (the inference failed or
        was cancelled) is cancelled, and its waiters infer the image themselves.
        """
        for sha, fut in owned.items():
            outcome = outcomes.get(sha)
            if outcome is not None and not fut.done():
                fut.set_result(outcome)
            if outcome is None or isinstance(outcome, InferenceError):
                if self._flights.get(sha) is fut:
                    del self._flights[sha]
                fut.cancel()  # a no-op once it has its outcome

    def forget(self, hashes: Iterable[str]) -> None:
        """Close the finished flights of ``hashes``: Redis holds their results now."""
        for sha in hashes:
            fut = self._flights.get(sha)
            if fut is not None and fut.done():
                del self._flights[sha]

    @staticmethod
    async def wait(
        flights: Mapping[str, asyncio.Future[Outcome]],
    ) -> tuple[dict[str, Outcome], list[str]]:
        """The outcomes of other batches' ``flights``; and the hashes whose flight was cancelled."""
        if flights:
            # asyncio.wait neither raises the futures' outcomes nor cancels them.
            await asyncio.wait(flights.values())
        outcomes = {sha: f.result() for sha, f in flights.items() if not f.cancelled()}
        return outcomes, [sha for sha, f in flights.items() if f.cancelled()]


class ImageClaims:
    """A worker's claims in Redis on the images it infers (off when ``ttl_ms`` is 0)."""

    def __init__(
        self,
        cache: LabelCache,
        *,
        model_name: str,
        model_version: str,
        ttl_ms: int,
        poll_interval_s: float = 0.02,
        owner: str | None = None,
    ) -> None:
        self.cache = cache
        self.model_name = model_name
        self.model_version = model_version
        self.ttl_ms = ttl_ms
        self.poll_interval_s = poll_interval_s
        #: Whose claim a key holds, for whoever reads Redis while debugging.
        self.owner = owner or f"worker-{uuid.uuid4().hex[:12]}"

    @property
    def enabled(self) -> bool:
        """False when ``image_claim_ttl_ms`` is 0: every worker infers its own misses."""
        return self.ttl_ms > 0

    async def claim(self, hashes: Sequence[str]) -> tuple[set[str], dict[str, ImageResult]]:
        """Claim ``hashes``; those another worker holds, and those already answered.

        An image whose result is in Redis by the time of the claim (its holder
        finished after this batch looked it up) is not inferred again: its
        result comes back, and a claim won on it is released at once. While
        Redis is down nothing is held elsewhere and nothing is found.
        """
        if not hashes or not self.enabled:
            return set(), {}
        mine, results = await self.cache.claim_images(
            hashes, self.owner, self.model_name, self.model_version, self.ttl_ms
        )
        won = dict(zip(hashes, mine, strict=True))
        found = {sha: r for sha, r in zip(hashes, results, strict=True) if r is not None}
        await self.release([sha for sha in found if won[sha]])
        return {sha for sha, ok in won.items() if not ok and sha not in found}, found

    async def wait_for(self, hashes: Iterable[str]) -> tuple[dict[str, ImageResult], set[str]]:
        """Wait for the results of images other workers claimed.

        Returns the results written, and the hashes to infer here: a claim gone
        with no result, one still unanswered once a claim's whole lifetime has
        passed, and every one while Redis is down.
        """
        pending = list(dict.fromkeys(hashes))
        found: dict[str, ImageResult] = {}
        orphans: set[str] = set()
        deadline = time.monotonic() + self.ttl_ms / 1000 + 1.0
        while pending and time.monotonic() < deadline:
            try:
                results, held = await self.cache.peek_claimed(
                    pending, self.model_name, self.model_version
                )
            except CacheUnavailable:
                break
            still = []
            for sha, result, claimed in zip(pending, results, held, strict=True):
                if result is not None:
                    found[sha] = result
                elif not claimed:
                    orphans.add(sha)
                else:
                    still.append(sha)
            pending = still
            if pending:
                await asyncio.sleep(self.poll_interval_s)
        orphans.update(pending)
        return found, orphans

    async def release(self, hashes: Sequence[str]) -> None:
        """Give up the claims of images that failed, so that their waiters stop waiting."""
        if hashes and self.enabled:
            await self.cache.release_claims(hashes, self.model_version)
