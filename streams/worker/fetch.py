"""Fetch a product image by reference (``image_uri``) under a strict policy.

``https://`` to public addresses only, ``http://`` only to ``allowed_hosts``,
``file://`` only under ``file_root``, nothing else. Against server-side request
forgery every address a host resolves to must be public, the connection goes to
exactly those checked addresses (no DNS re-binding), and every redirect hop is
checked again like a new URI. Size and time are bounded over the whole fetch.
Errors are :class:`FetchError` with a stable ``code`` and ``retriable``.
The full policy: docs/SECURITY.md ("Fetching image_uri").
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

if TYPE_CHECKING:
    from streams.settings import Settings

__all__ = [
    "FETCH_FAILED",
    "TOO_LARGE",
    "URI_REFUSED",
    "FetchError",
    "FetchPolicy",
    "ImageFetcher",
    "fetch_image",
]

logger = logging.getLogger(__name__)

URI_REFUSED: Final = "image.uri_refused"
FETCH_FAILED: Final = "image.fetch_failed"
TOO_LARGE: Final = "image.too_large"

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_RETRIABLE_STATUS: Final = frozenset({408, 425, 429})
_CHUNK_BYTES: Final = 64 * 1024
_HEADERS: Final = {
    "Accept": "image/*",
    "Accept-Encoding": "identity",
    "User-Agent": "vitrine-image-fetcher/1",
}
# NAT64 (RFC 6052) carries an IPv4 address in its low 32 bits.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_NUMERIC_LABEL: Final = re.compile(r"0x[0-9a-f]*|[0-9]+")


@dataclass(frozen=True)
class FetchPolicy:
    """What ``image_uri`` may point at, and how much a fetch may take."""

    allowed_hosts: frozenset[str] = frozenset()
    """Hosts that ``http://`` may name (lower-case, no port); ``https://`` needs no entry."""
    file_root: Path | None = None
    """Directory that ``file://`` URIs must stay under; ``None`` refuses ``file://``."""
    max_bytes: int = 10 * 1024 * 1024
    """Largest image accepted, as ``VITRINE_MAX_IMAGE_BYTES``."""
    timeout_s: float = 5.0
    """Limit on the whole fetch, redirects included."""
    allow_private_addresses: bool = False
    """Let hosts in ``allowed_hosts`` resolve to private or loopback addresses."""
    max_redirects: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        """Build the policy from ``VITRINE_IMAGE_*`` settings."""
        return cls(
            allowed_hosts=settings.images.allowed_hosts,
            file_root=settings.images.file_root,
            max_bytes=settings.images.max_image_bytes,
            timeout_s=settings.images.fetch_timeout_ms / 1000,
            allow_private_addresses=settings.images.fetch_allow_private_addresses,
        )


class FetchError(Exception):
    """An image could not be fetched; ``code`` is the dead-letter code."""

    def __init__(self, code: str, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retriable = retriable

    def __repr__(self) -> str:
        return (
            f"FetchError(code={self.code!r}, message={self.message!r}, retriable={self.retriable})"
        )


def _refused(message: str) -> FetchError:
    return FetchError(URI_REFUSED, message)


def _failed(message: str, *, retriable: bool) -> FetchError:
    return FetchError(FETCH_FAILED, message, retriable=retriable)


def _show(uri: str | URL) -> str:
    """Return ``uri`` for a message: without credentials, at most 200 characters."""
    if isinstance(uri, str) and "@" in uri:
        text = uri
        try:
            uri = URL(text)
        except (ValueError, TypeError):
            uri = text.rsplit("@", 1)[-1]
    if isinstance(uri, URL) and (uri.user is not None or uri.password is not None):
        uri = uri.with_user(None)
    text = str(uri)
    return text if len(text) <= 200 else text[:200] + "..."


def _normal_host(host: str) -> str:
    return host.lower().rstrip(".")


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not _is_public(embedded):
            return False
    return address.is_global and not address.is_multicast


def _check_address(host: str, address: str, policy: FetchPolicy) -> None:
    """Raise unless ``host`` may be reached at ``address``."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        raise _refused(f"{host} resolved to {address!r}, which is not an IP address") from None
    if _is_public(parsed):
        return
    if policy.allow_private_addresses and _normal_host(host) in policy.allowed_hosts:
        return
    what = f"address {parsed}" if host == str(parsed) else f"{host} resolves to {parsed}, which"
    raise _refused(
        f"{what} is not a public address; only hosts in image_fetch_allowed_hosts "
        "(VITRINE_IMAGE_FETCH_ALLOWED_HOSTS) may be private, and only with "
        "allow_private_addresses"
    )


class _PolicyResolver(AbstractResolver):
    """Resolves a name and refuses it unless every address passes the policy."""

    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        except (socket.gaierror, UnicodeError) as exc:
            raise _failed(f"cannot resolve {host}: {exc}", retriable=True) from None
        results: list[ResolveResult] = []
        for info_family, _, proto, _, sockaddr in infos:
            address = str(sockaddr[0])
            # Every address first: one private answer taints the whole name.
            _check_address(host, address, self._policy)
            results.append(
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=int(sockaddr[1]),
                    family=info_family,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not results:
            raise _failed(f"{host} has no addresses", retriable=True)
        return results

    async def close(self) -> None:
        """Nothing to release."""


class ImageFetcher:
    """Fetches image URIs under one policy, reusing HTTP connections between fetches.

    Use as ``async with ImageFetcher(policy) as fetcher: await fetcher.fetch(uri)``;
    :func:`fetch_image` does that for one URI.
    """

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_PolicyResolver(self.policy), use_dns_cache=False, limit=64
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                trust_env=False,  # no proxies from the environment
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
                headers=_HEADERS,
            )
        return self._session

    async def fetch(self, uri: str) -> bytes:
        """Return the bytes ``uri`` names; raise :class:`FetchError`."""
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                return await self._fetch(uri)
        except TimeoutError:
            raise _failed(
                f"fetching {_show(uri)} took over timeout_s={self.policy.timeout_s} "
                "(VITRINE_IMAGE_FETCH_TIMEOUT_MS)",
                retriable=True,
            ) from None

    async def _fetch(self, uri: str) -> bytes:
        try:
            scheme = urlsplit(uri).scheme.lower()
        except ValueError as exc:
            raise _refused(f"{_show(uri)} is not a valid URI: {exc}") from None
        if scheme == "file":
            return await asyncio.to_thread(_read_file, uri, self.policy)
        try:
            url = URL(uri)
        except (ValueError, TypeError) as exc:
            raise _refused(f"{_show(uri)} is not a valid URI: {exc}") from None
        return await self._fetch_http(url)

    async def _fetch_http(self, url: URL) -> bytes:
        original = url
        for hop in range(self.policy.max_redirects + 1):
            where = (_show(url) or "''") + (f" (redirected from {_show(original)})" if hop else "")
            try:
                location = await self._get(url)
            except FetchError as exc:
                if exc.code == URI_REFUSED:
                    raise _refused(f"{where}: {exc.message}") from None
                raise
            if isinstance(location, bytes):
                return location
            url = location
        raise _failed(
            f"{_show(original)} redirected more than max_redirects={self.policy.max_redirects}"
            " times",
            retriable=False,
        )

    async def _get(self, url: URL) -> bytes | URL:
        """Return the body, or where a redirect points."""
        self._check_http_url(url)
        try:
            async with self._http().get(url, allow_redirects=False) as response:
                if response.status in _REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise _failed(
                            f"{_show(url)} answered {response.status} without Location",
                            retriable=False,
                        )
                    try:
                        return url.join(URL(location))
                    except (ValueError, TypeError) as exc:
                        raise _refused(f"invalid redirect {_show(location)}: {exc}") from None
                if response.status != 200:
                    raise _failed(
                        f"{_show(url)} answered HTTP {response.status}",
                        retriable=response.status >= 500 or response.status in _RETRIABLE_STATUS,
                    )
                return await self._read_body(response, url)
        except FetchError:
            raise
        except aiohttp.InvalidURL as exc:
            raise _refused(f"not a valid URL: {exc}") from None
        except aiohttp.ClientSSLError as exc:
            raise _failed(f"TLS with {url.host} failed: {exc}", retriable=False) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _failed(f"fetching {_show(url)} failed: {exc!r}", retriable=True) from None

    def _check_http_url(self, url: URL) -> None:
        scheme = url.scheme.lower()
        if scheme not in {"http", "https"}:
            raise _refused(
                f"scheme {scheme or '(none)'!r} is not allowed; use https://, http:// to an "
                "allow-listed host, or file:// under image_file_root (a redirect may lead "
                "only to http:// or https://)"
            )
        if url.user is not None or url.password is not None:
            raise _refused("credentials in URIs are refused")
        host = url.raw_host
        if not host:
            raise _refused("names no host")
        name = _normal_host(host)
        if scheme == "http" and name not in self.policy.allowed_hosts:
            raise _refused(
                f"http:// host {name} is not in image_fetch_allowed_hosts "
                "(VITRINE_IMAGE_FETCH_ALLOWED_HOSTS); use https://"
            )
        try:
            literal = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            if _NUMERIC_LABEL.fullmatch(name.rsplit(".", 1)[-1]):
                # 127.1, 2130706433, 0x7f.0.0.1: getaddrinfo would map these onto
                # addresses; no real name ends in a numeric label.
                raise _refused(f"{name} is not a canonical IP address") from None
            return  # a name: the resolver checks every address it resolves to
        # aiohttp connects to IP literals without asking the resolver: check here.
        _check_address(str(literal), str(literal), self.policy)

    async def _read_body(self, response: aiohttp.ClientResponse, url: URL) -> bytes:
        limit = self.policy.max_bytes
        length = response.content_length
        if length is not None and length > limit:
            raise FetchError(
                TOO_LARGE,
                f"{_show(url)} is {length} bytes (Content-Length), over max_bytes={limit} "
                "(VITRINE_MAX_IMAGE_BYTES)",
            )
        chunks: list[bytes] = []
        received = 0
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            received += len(chunk)
            if received > limit:
                raise FetchError(
                    TOO_LARGE,
                    f"{_show(url)} sent over max_bytes={limit} (VITRINE_MAX_IMAGE_BYTES)",
                )
            chunks.append(chunk)
        return b"".join(chunks)


def _read_file(uri: str, policy: FetchPolicy) -> bytes:
    """Read a ``file://`` URI under ``policy.file_root``; runs in a worker thread."""
    if policy.file_root is None:
        raise _refused(
            f"{_show(uri)}: file:// is off; set image_file_root (VITRINE_IMAGE_FILE_ROOT)"
        )
    parts = urlsplit(uri)
    if parts.netloc not in {"", "localhost"}:
        raise _refused(f"{_show(uri)}: file:// must name a local path, not host {parts.netloc!r}")
    if parts.query:
        raise _refused(f"{_show(uri)}: file:// URIs take no query")
    path = unquote(parts.path)
    if not path.startswith("/") or "\x00" in path:
        raise _refused(f"{_show(uri)}: file:// needs an absolute path")
    if ".." in path.split("/"):
        raise _refused(f"{_show(uri)}: '..' is not allowed in file:// paths")
    root = os.path.realpath(policy.file_root)
    target = os.path.realpath(path)
    if os.path.commonpath([root, target]) != root:
        raise _refused(
            f"{_show(uri)} resolves outside image_file_root={policy.file_root} "
            "(VITRINE_IMAGE_FILE_ROOT)"
        )
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags)
    except FileNotFoundError:
        raise _failed(f"{_show(uri)}: no such file", retriable=False) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # swapped for a symlink since realpath()
            raise _refused(f"{_show(uri)}: symlink changed while opening") from None
        raise _failed(f"{_show(uri)}: cannot open: {exc.strerror}", retriable=False) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refused(f"{_show(uri)} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as file:
        if info.st_size > policy.max_bytes:
            raise FetchError(
                TOO_LARGE,
                f"{_show(uri)} is {info.st_size} bytes, over max_bytes={policy.max_bytes} "
                "(VITRINE_MAX_IMAGE_BYTES)",
            )
        data = file.read(policy.max_bytes + 1)
    if len(data) > policy.max_bytes:
        raise FetchError(
            TOO_LARGE, f"{_show(uri)} grew over max_bytes={policy.max_bytes} while read"
        )
    return data


async def fetch_image(uri: str, policy: FetchPolicy) -> bytes:
    """Return the bytes of the image at ``uri`` under ``policy``; raise :class:`FetchError`.

    Opens and closes its own HTTP session (only for http and https); use
    :class:`ImageFetcher` to reuse one across fetches.
    """
    async with ImageFetcher(policy) as fetcher:
        return await fetcher.fetch(uri)
