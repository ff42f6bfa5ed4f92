"""The console's pages over HTTP, with no Kafka: sign-in, guards, headers, escaping, filters."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp.test_utils import TestClient, TestServer

from streams.console.decisions import Taxonomy
from streams.console.queue import Ref
from streams.console.web import CSP, Console, build_app
from streams.settings import ConsoleSettings, Settings
from tests.unit.streams.console.records import rec

SECRET = "unit-test-secret-42"
TITLE = "<script>alert(1)</script>"


def _console() -> Console:
    console = Console(
        Settings(console=ConsoleSettings(page_size=2)),
        SECRET,
        taxonomy=Taxonomy({"Banana": "produce"}),
    )
    for i in range(3):
        console.queue.add(rec(f"p{i}", seller=f"s{i}"), Ref("product-review", 0, i))
    dup = msgspec.structs.replace(rec("x", flags=("duplicate_image",), seller="s9"), title=TITLE)
    console.queue.add(dup, Ref("listing-review", 0, 0))
    return console


def _run(body: Callable[[TestClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(build_app(_console()))) as client:
            await body(client)

    asyncio.run(main())


async def _csrf(client: TestClient, path: str = "/login") -> str:
    async with client.get(path) as r:
        found = re.search(r'name="csrf" value="([^"]+)"', await r.text())
    assert found is not None
    return found.group(1)


async def _sign_in(client: TestClient) -> None:
    form = {"csrf": await _csrf(client), "reviewer": "rev-1", "secret": SECRET}
    async with client.post("/login", data=form, allow_redirects=False) as r:
        assert r.status == 303
        cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie


def test_without_a_session_only_the_sign_in_page_answers() -> None:
    async def body(client: TestClient) -> None:
        async with client.get("/", allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (303, "/login")
            assert r.headers["Content-Security-Policy"] == CSP
        async with client.get(f"/photo/{'a' * 64}") as r:
            assert r.status == 401
        async with client.post("/decide", data={"product_id": "p0"}) as r:
            assert r.status == 401
        form = {"csrf": await _csrf(client), "reviewer": "rev-1", "secret": "wrong"}
        async with client.post("/login", data=form) as r:
            assert r.status == 401
        async with client.post("/login", data={"reviewer": "rev-1", "secret": SECRET}) as r:
            assert r.status == 403, "no CSRF token"

    _run(body)


def test_a_signed_in_page_escapes_titles_and_refuses_a_post_without_csrf() -> None:
    async def body(client: TestClient) -> None:
        await _sign_in(client)
        async with client.get("/?flag=duplicate_image") as r:
            page = await r.text()
            assert r.headers["Content-Security-Policy"] == CSP
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert TITLE not in page
        assert '<span id="queue-size">4</span> in queue' in page
        assert 'data-product="x"' in page
        assert 'data-product="p0"' not in page
        async with client.post("/decide", data={"product_id": "x", "decision": "accept"}) as r:
            assert r.status == 403

    _run(body)


def test_pages_and_filters() -> None:
    async def body(client: TestClient) -> None:
        await _sign_in(client)
        async with client.get("/?page=2") as r:
            page = await r.text()
        assert re.findall(r'data-product="(\w+)"', page) == ["p2", "x"]
        assert "page 2 of 2 (4 items)" in page
        async with client.get("/?seller=s1") as r:
            assert re.findall(r'data-product="(\w+)"', await r.text()) == ["p1"]
        async with client.get("/labels?q=ban") as r:
            assert await r.json() == [{"label": "Banana", "category": "produce"}]

    _run(body)


def test_repeated_wrong_secrets_are_throttled_even_before_the_right_one() -> None:
    async def body(client: TestClient) -> None:
        limit = ConsoleSettings().signin_max_failures
        for _ in range(limit):
            form = {"csrf": await _csrf(client), "reviewer": "rev-1", "secret": "guess"}
            async with client.post("/login", data=form) as r:
                assert r.status == 401
        form = {"csrf": await _csrf(client), "reviewer": "rev-1", "secret": SECRET}
        async with client.post("/login", data=form, allow_redirects=False) as r:
            assert r.status == 429
            assert 0 < int(r.headers["Retry-After"]) <= ConsoleSettings().signin_window_s
            assert "too many failed sign-ins" in await r.text()

    _run(body)
