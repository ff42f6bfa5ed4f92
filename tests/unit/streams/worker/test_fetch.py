"""Fetching images by reference: the policy, the limits and the error codes.

No external network: an HTTP server on 127.0.0.1 stands in for image hosts, and every
outgoing connection is recorded so that refusals can be shown to connect nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from streams.worker.fetch import FetchError, FetchPolicy, ImageFetcher, fetch_image
from tests.unit.schemas.support import bad_cases

IMAGE = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9"

Handler = Callable[[asyncio.StreamWriter], Awaitable[None]]


class ImageServer:
    """A minimal HTTP/1.1 server; one request per connection."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ImageServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release.set()
        self._server.close()
        await self._server.wait_closed()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # awaited on exit, so no handler outlives the test
        await self._handle(reader, writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")
            target = request_line.split(" ")[1]
            headers = {}
            for line in lines:
                if line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            self.requests.append((target, headers))
            handler = self.routes.get(target)
            if handler is None:
                await respond(writer, 404, b"not found")
            else:
                await handler(writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    length: int | None = -1,
) -> None:
    head = [f"HTTP/1.1 {status} X", "Connection: close"]
    if length == -1:
        head.append(f"Content-Length: {len(body)}")
    elif length is not None:
        head.append(f"Content-Length: {length}")
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


def image(body: bytes = IMAGE) -> Handler:
    async def handler(writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, body, {"Content-Type": "image/jpeg"})

    return handler


def redirect(location: str, status: int = 302) -> Handler:
    async def handler(writer: asyncio.StreamWriter) -> None:
        await respond(writer, status, b"", {"Location": location})

    return handler


def status(code: int) -> Handler:
    async def handler(writer: asyncio.StreamWriter) -> None:
        await respond(writer, code, b"nope")

    return handler


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every outgoing connect; refuse any that is not to 127.0.0.1."""
    seen: list[Any] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(address: Any) -> None:
        seen.append(address)
        if not (isinstance(address, tuple) and address[0] == "127.0.0.1"):
            raise AssertionError(f"test tried to connect to {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return seen


def local_policy(**changes: Any) -> FetchPolicy:
    """The test server is on loopback: allow exactly it."""
    settings: dict[str, Any] = {
        "allowed_hosts": frozenset({"127.0.0.1"}),
        "allow_private_addresses": True,
        "max_bytes": 64 * 1024,
        "timeout_s": 2.0,
    }
    settings.update(changes)
    return FetchPolicy(**settings)


def run_with_server(
    routes: dict[str, Handler], scenario: Callable[[ImageServer], Awaitable[Any]]
) -> Any:
    async def main() -> Any:
        server = ImageServer()
        server.routes.update(routes)
        async with server:
            return await scenario(server)

    return asyncio.run(main())


def fetch_error(uri: str, policy: FetchPolicy) -> FetchError:
    with pytest.raises(FetchError) as caught:
        asyncio.run(fetch_image(uri, policy))
    return caught.value


# --- http(s) ------------------------------------------------------------------


def test_allowed_fetch_returns_the_bytes(connections: list[Any]) -> None:
    async def scenario(server: ImageServer) -> bytes:
        return await fetch_image(f"{server.base}/img.jpg", local_policy())

    assert run_with_server({"/img.jpg": image()}, scenario) == IMAGE
    assert connections


def test_request_asks_for_identity_encoding_and_an_image(connections: list[Any]) -> None:
    async def scenario(server: ImageServer) -> list[tuple[str, dict[str, str]]]:
        await fetch_image(f"{server.base}/img.jpg", local_policy())
        return server.requests

    [(target, headers)] = run_with_server({"/img.jpg": image()}, scenario)
    assert target == "/img.jpg"
    assert headers["accept-encoding"] == "identity"
    assert headers["accept"] == "image/*"
    assert "cookie" not in headers


def test_fetcher_reuses_its_session(connections: list[Any]) -> None:
    async def scenario(server: ImageServer) -> list[bytes]:
        async with ImageFetcher(local_policy()) as fetcher:
            return [await fetcher.fetch(f"{server.base}/img.jpg") for _ in range(3)]

    assert run_with_server({"/img.jpg": image()}, scenario) == [IMAGE] * 3


@pytest.mark.parametrize(
    "uri",
    [
        "ftp://images.example.com/a.jpg",
        "gopher://images.example.com/a",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "ws://images.example.com/a.jpg",
        "images.example.com/a.jpg",
        "//images.example.com/a.jpg",
        "",
        "http://[::1",
    ],
)
def test_other_schemes_are_refused(uri: str, connections: list[Any]) -> None:
    error = fetch_error(uri, FetchPolicy())
    assert error.code == "image.uri_refused"
    assert not error.retriable
    assert connections == []


def test_http_host_must_be_allow_listed(connections: list[Any]) -> None:
    error = fetch_error("http://images.example.com/a.jpg", FetchPolicy())
    assert error.code == "image.uri_refused"
    assert "VITRINE_IMAGE_FETCH_ALLOWED_HOSTS" in error.message
    assert connections == []


def test_http_localhost_is_refused_by_default(connections: list[Any]) -> None:
    assert fetch_error("http://localhost/a.jpg", FetchPolicy()).code == "image.uri_refused"
    assert connections == []


@pytest.mark.parametrize(
    "uri",
    [
        "https://10.0.0.1/a.jpg",
        "https://localhost/a.jpg",
        "https://127.0.0.1/a.jpg",
        "https://127.1/a.jpg",
        "https://2130706433/a.jpg",
        "https://0x7f.0.0.1/a.jpg",
        "https://0177.0.0.1/a.jpg",
        "https://0.0.0.0/a.jpg",
        "https://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/a.jpg",
        "https://192.168.1.10/a.jpg",
        "https://224.0.0.1/a.jpg",
        "https://[::1]/a.jpg",
        "https://[fe80::1]/a.jpg",
        "https://[fd00::1]/a.jpg",
        "https://[::ffff:10.0.0.1]/a.jpg",
        "https://[64:ff9b::a00:1]/a.jpg",
    ],
)
def test_private_addresses_are_refused_without_connecting(uri: str, connections: list[Any]) -> None:
    started = time.monotonic()
    error = fetch_error(uri, FetchPolicy(timeout_s=30))
    assert error.code == "image.uri_refused", error.message
    assert connections == []
    assert time.monotonic() - started < 5


def test_allow_listed_http_host_still_needs_allow_private(connections: list[Any]) -> None:
    policy = FetchPolicy(allowed_hosts=frozenset({"10.0.0.1"}), timeout_s=30)
    error = fetch_error("http://10.0.0.1/a.jpg", policy)
    assert error.code == "image.uri_refused"
    assert "not a public address" in error.message
    assert connections == []


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            asked.append(host)
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, int(port), 0, 0) if ":" in a else (a, int(port)),
                )
                for a in answers[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_a_name_with_any_private_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, connections: list[Any]
) -> None:
    asked = _fake_dns(
        monkeypatch,
        {"mixed.example.test": ["93.184.216.34", "10.1.2.3"], "v6.example.test": ["fc00::5"]},
    )
    for uri in ("https://mixed.example.test/a.jpg", "https://v6.example.test/a.jpg"):
        error = fetch_error(uri, FetchPolicy())
        assert error.code == "image.uri_refused"
        assert "not a public address" in error.message
    assert asked == ["mixed.example.test", "v6.example.test"]
    assert connections == []


def test_connects_to_the_checked_address_and_sends_the_name(
    monkeypatch: pytest.MonkeyPatch, connections: list[Any]
) -> None:
    asked = _fake_dns(monkeypatch, {"images.internal.test": ["127.0.0.1"]})

    async def scenario(server: ImageServer) -> tuple[bytes, str]:
        policy = local_policy(allowed_hosts=frozenset({"images.internal.test"}))
        got = await fetch_image(f"http://images.internal.test:{server.port}/img.jpg", policy)
        return got, server.requests[0][1]["host"]

    got, host = run_with_server({"/img.jpg": image()}, scenario)
    assert got == IMAGE
    assert host == "images.internal.test:" + host.rsplit(":", 1)[1]
    assert asked == ["images.internal.test"]
    assert {address[0] for address in connections} == {"127.0.0.1"}


def test_unresolvable_host_is_a_retriable_failure(
    monkeypatch: pytest.MonkeyPatch, connections: list[Any]
) -> None:
    def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    error = fetch_error("https://nowhere.example.test/a.jpg", FetchPolicy())
    assert error.code == "image.fetch_failed"
    assert error.retriable
    assert connections == []


def test_credentials_in_uri_are_refused(connections: list[Any]) -> None:
    error = fetch_error("https://user:secret@images.example.com/a.jpg", FetchPolicy())
    assert error.code == "image.uri_refused"
    assert "secret" not in error.message
    assert connections == []


# --- redirects -----------------------------------------------------------------


def test_redirect_on_the_same_allowed_host_is_followed(connections: list[Any]) -> None:
    async def scenario(server: ImageServer) -> bytes:
        return await fetch_image(f"{server.base}/old", local_policy())

    routes = {"/old": redirect("/moved", 301), "/moved": redirect("/img.jpg", 307)}
    assert run_with_server({**routes, "/img.jpg": image()}, scenario) == IMAGE


@pytest.mark.parametrize(
    "location",
    [
        "https://10.0.0.1/a.jpg",
        "https://localhost:{port}/img.jpg",
        "https://169.254.169.254/latest/meta-data/",
        "http://localhost:{port}/img.jpg",
        "http://images.example.com/a.jpg",
        "file:///etc/passwd",
        "ftp://images.example.com/a.jpg",
        "https://user:pw@images.example.com/a.jpg",
    ],
)
def test_redirect_off_policy_is_refused(location: str, connections: list[Any]) -> None:
    async def scenario(server: ImageServer) -> FetchError:
        server.routes["/go"] = redirect(location.format(port=server.port))
        with pytest.raises(FetchError) as caught:
            await fetch_image(f"{server.base}/go", local_policy())
        return caught.value

    error = run_with_server({}, scenario)
    assert error.code == "image.uri_refused"
    assert "redirect" in error.message
    # Only the first hop, to the test server, ever connected.
    assert len(connections) == 1


def test_too_many_redirects_fail_for_good(connections: list[Any]) -> None:
    async def scenario(server: ImageServer) -> FetchError:
        with pytest.raises(FetchError) as caught:
            await fetch_image(f"{server.base}/loop", local_policy())
        return caught.value

    error = run_with_server({"/loop": redirect("/loop")}, scenario)
    assert error.code == "image.fetch_failed"
    assert not error.retriable
    assert "max_redirects=3" in error.message
    assert len(connections) == 4


def test_redirect_without_location_fails(connections: list[Any]) -> None:
    async def scenario(server: ImageServer) -> FetchError:
        with pytest.raises(FetchError) as caught:
            await fetch_image(f"{server.base}/r", local_policy())
        return caught.value

    assert run_with_server({"/r": status(302)}, scenario).code == "image.fetch_failed"


# --- status, size and time -------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "retriable"), [(404, False), (403, False), (429, True), (500, True), (503, True)]
)
def test_http_errors_say_whether_to_retry(
    code: int, retriable: bool, connections: list[Any]
) -> None:
    async def scenario(server: ImageServer) -> FetchError:
        with pytest.raises(FetchError) as caught:
            await fetch_image(f"{server.base}/x", local_policy())
        return caught.value

    error = run_with_server({"/x": status(code)}, scenario)
    assert error.code == "image.fetch_failed"
    assert error.retriable is retriable
    assert str(code) in error.message


def test_too_large_by_content_length_is_refused_before_reading(connections: list[Any]) -> None:
    async def declared(writer: asyncio.StreamWriter) -> None:
        await respond(writer, 200, b"\xff" * 10, length=50_000_000)

    async def scenario(server: ImageServer) -> FetchError:
        with pytest.raises(FetchError) as caught:
            await fetch_image(f"{server.base}/big", local_policy(max_bytes=1000))
        return caught.value

    error = run_with_server({"/big": declared}, scenario)
    assert error.code == "image.too_large"
    assert "Content-Length" in error.message
    assert "max_bytes=1000" in error.message


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_too_large_by_streamed_bytes(framing: str, connections: list[Any]) -> None:
    async def streamed(writer: asyncio.StreamWriter) -> None:
        if framing == "chunked":
            await respond(writer, 200, length=None, headers={"Transfer-Encoding": "chunked"})
            for _ in range(20):
                writer.write(b"400\r\n" + b"\xaa" * 1024 + b"\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        else:
            await respond(writer, 200, length=None)
            for _ in range(20):
                writer.write(b"\xaa" * 1024)
                await writer.drain()

    async def scenario(server: ImageServer) -> FetchError:
        with pytest.raises(FetchError) as caught:
            await fetch_image(f"{server.base}/stream", local_policy(max_bytes=5000))
        return caught.value

    error = run_with_server({"/stream": streamed}, scenario)
    assert error.code == "image.too_large"


def test_exactly_max_bytes_is_accepted(connections: list[Any]) -> None:
    async def scenario(server: ImageServer) -> bytes:
        return await fetch_image(f"{server.base}/img", local_policy(max_bytes=len(IMAGE)))

    assert run_with_server({"/img": image()}, scenario) == IMAGE


def test_total_timeout_is_retriable(connections: list[Any]) -> None:
    async def scenario(server: ImageServer) -> tuple[FetchError, float]:
        async def stall(writer: asyncio.StreamWriter) -> None:
            await respond(writer, 200, length=len(IMAGE))
            writer.write(IMAGE[:10])  # then dribble nothing more
            await server.release.wait()

        server.routes["/slow"] = stall
        started = time.monotonic()
        with pytest.raises(FetchError) as caught:
            await fetch_image(f"{server.base}/slow", local_policy(timeout_s=0.3))
        return caught.value, time.monotonic() - started

    error, elapsed = run_with_server({}, scenario)
    assert error.code == "image.fetch_failed"
    assert error.retriable
    assert "timeout_s=0.3" in error.message
    assert elapsed < 2


def test_connection_refused_is_retriable(connections: list[Any]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = fetch_error(f"http://127.0.0.1:{port}/a.jpg", local_policy())
    assert error.code == "image.fetch_failed"
    assert error.retriable


# --- file:// ---------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    (images / "sub" / "a b.jpg").write_bytes(IMAGE)
    (images / "img.jpg").write_bytes(IMAGE)
    (tmp_path / "secret.txt").write_bytes(b"secret")
    return images


def file_policy(root: Path, **changes: Any) -> FetchPolicy:
    return FetchPolicy(file_root=root, **changes)


def test_file_under_root_is_read(root: Path) -> None:
    policy = file_policy(root)
    assert asyncio.run(fetch_image(f"file://{root}/img.jpg", policy)) == IMAGE
    assert asyncio.run(fetch_image(f"file://{root}/sub/a%20b.jpg", policy)) == IMAGE
    assert asyncio.run(fetch_image(f"file://localhost{root}/img.jpg", policy)) == IMAGE


def test_root_given_through_a_symlink_works(root: Path, tmp_path: Path) -> None:
    link = tmp_path / "link-to-images"
    link.symlink_to(root)
    assert asyncio.run(fetch_image(f"file://{link}/img.jpg", file_policy(link))) == IMAGE
    assert asyncio.run(fetch_image(f"file://{root}/img.jpg", file_policy(link))) == IMAGE


@pytest.mark.parametrize(
    "path",
    [
        "{root}/../secret.txt",
        "{root}/%2e%2e/secret.txt",
        "{root}/sub/../../secret.txt",
        "{tmp}/secret.txt",
        "/etc/passwd",
        "{root}x/img.jpg",
    ],
)
def test_file_escapes_are_refused(path: str, root: Path, tmp_path: Path) -> None:
    uri = "file://" + path.format(root=root, tmp=tmp_path)
    error = fetch_error(uri, file_policy(root))
    assert error.code == "image.uri_refused", error.message


def test_symlink_out_of_root_is_refused_and_inside_is_followed(root: Path, tmp_path: Path) -> None:
    (root / "escape.jpg").symlink_to(tmp_path / "secret.txt")
    (root / "alias.jpg").symlink_to(root / "img.jpg")
    assert fetch_error(f"file://{root}/escape.jpg", file_policy(root)).code == ("image.uri_refused")
    assert asyncio.run(fetch_image(f"file://{root}/alias.jpg", file_policy(root))) == IMAGE


def test_file_needs_a_configured_root(root: Path) -> None:
    error = fetch_error(f"file://{root}/img.jpg", FetchPolicy())
    assert error.code == "image.uri_refused"
    assert "VITRINE_IMAGE_FILE_ROOT" in error.message


def test_file_on_another_host_is_refused(root: Path) -> None:
    error = fetch_error(f"file://fileserver{root}/img.jpg", file_policy(root))
    assert error.code == "image.uri_refused"


def test_missing_file_fails_for_good(root: Path) -> None:
    error = fetch_error(f"file://{root}/nope.jpg", file_policy(root))
    assert error.code == "image.fetch_failed"
    assert not error.retriable
    assert "no such file" in error.message


def test_directories_and_fifos_are_refused_without_blocking(root: Path) -> None:
    os.mkfifo(root / "pipe.jpg")
    assert fetch_error(f"file://{root}/sub", file_policy(root)).code == "image.uri_refused"
    started = time.monotonic()
    error = fetch_error(f"file://{root}/pipe.jpg", file_policy(root, timeout_s=5))
    assert error.code == "image.uri_refused"
    assert "regular file" in error.message
    assert time.monotonic() - started < 2


def test_large_file_is_too_large(root: Path) -> None:
    error = fetch_error(f"file://{root}/img.jpg", file_policy(root, max_bytes=100))
    assert error.code == "image.too_large"
    assert "max_bytes=100" in error.message


# --- the shared corpus --------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [c for c in bad_cases() if c.expected_code.startswith("image.uri")],
    ids=lambda c: c.name,
)
def test_bad_event_corpus_uris_are_refused(
    case: Any, tmp_path: Path, connections: list[Any]
) -> None:
    from schemas import decode_product_image

    uri = decode_product_image(case.raw).image_uri
    assert uri is not None
    for policy in (FetchPolicy(), FetchPolicy(file_root=tmp_path)):
        assert fetch_error(uri, policy).code == case.expected_code
    assert connections == []


def test_policy_from_settings() -> None:
    from streams.settings import ImageSettings, Settings

    images = ImageSettings(
        fetch_allowed_hosts="Images.Internal , cdn.local",
        file_root=Path("/srv/images"),
        max_image_bytes=1234,
        fetch_timeout_ms=2500,
    )
    settings = Settings(images=images)
    policy = FetchPolicy.from_settings(settings)
    assert policy == FetchPolicy(
        allowed_hosts=frozenset({"images.internal", "cdn.local"}),
        file_root=Path("/srv/images"),
        max_bytes=1234,
        timeout_s=2.5,
    )
