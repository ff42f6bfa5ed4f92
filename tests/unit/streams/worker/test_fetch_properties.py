"""Property tests of the image URI policy: any URI gets a FetchError or bytes, never a leak.

Budget (bounded for CI): 300 examples for each of the three properties, no
deadline (the first asyncio loop of a run is slow); together a few seconds.
Generated URIs never name a public address or an https:// name, so nothing
is resolved or connected to (a guard fails the test if anything tries).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.worker.fetch import FetchError, FetchPolicy, _check_address, fetch_image

BUDGET = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
URI_REFUSED = "image.uri_refused"


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Fail on any connect or name lookup (the policy must refuse before either)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the policy let a connection or lookup through: {args!r}")

    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", refuse)
    mp.setattr(socket.socket, "connect_ex", refuse)
    mp.setattr(socket, "getaddrinfo", refuse)
    try:
        yield
    finally:
        mp.undo()


def non_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    embedded = getattr(address, "ipv4_mapped", None)
    # Multicast is no fetch target, also inside an IPv4-mapped IPv6 address
    # (::ffff:224.0.0.0, which Python calls global).
    if address.is_multicast or (embedded is not None and embedded.is_multicast):
        return True
    return not address.is_global or (embedded is not None and not embedded.is_global)


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embeds_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return isinstance(address, ipaddress.IPv6Address) and bool(
        address.sixtofour or address in NAT64
    )


private_ips = st.ip_addresses().filter(non_public)
names = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True)


def host_text(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"[{address}]" if address.version == 6 else str(address)


@st.composite
def risky_uris(draw: st.DrawFn) -> str:
    """URIs a hostile or careless producer might send, none of which may be fetched."""
    kind = draw(st.sampled_from(["private-http", "private-https", "http-name", "scheme", "file"]))
    path = draw(st.from_regex(r"(/[A-Za-z0-9._%~-]{0,12}){0,4}", fullmatch=True))
    port = draw(st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")))
    if kind in ("private-http", "private-https"):
        scheme = kind.split("-")[1]
        return f"{scheme}://{host_text(draw(private_ips))}{port}{path}"
    if kind == "http-name":  # not allow-listed: refused before any lookup
        return f"http://{draw(names)}{port}{path}"
    if kind == "scheme":
        scheme = draw(st.sampled_from(["ftp", "gopher", "data", "javascript", "ldap", "dict",
                                       "jar", "ws", "sftp", "HTTPX"]))  # fmt: skip
        return f"{scheme}://{draw(names)}{path}"
    return f"file://{draw(st.sampled_from(['', 'localhost', 'evil.example']))}{path}/../etc/passwd"


@BUDGET
@given(risky_uris())
def test_risky_uris_are_refused_without_touching_the_network(uri: str) -> None:
    policy = FetchPolicy(file_root=Path("/nonexistent-vitrine-root"))
    with no_network(), pytest.raises(FetchError) as caught:
        asyncio.run(fetch_image(uri, policy))
    assert caught.value.code in (URI_REFUSED, "image.fetch_failed"), caught.value
    assert not caught.value.retriable


@BUDGET
@given(st.text(max_size=200).filter(lambda s: "https://" not in s.lower()))
def test_any_text_raises_fetch_error_only(uri: str) -> None:
    policy = FetchPolicy()
    with no_network(), pytest.raises(FetchError):
        asyncio.run(fetch_image(uri, policy))


@BUDGET
@given(st.ip_addresses(), st.booleans(), st.booleans())
def test_a_private_address_passes_only_for_an_allow_listed_host_with_private_allowed(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool, listed: bool
) -> None:
    policy = FetchPolicy(
        allowed_hosts=frozenset({"images.internal"}) if listed else frozenset(),
        allow_private_addresses=allow_private,
    )
    code = None
    try:
        _check_address("images.internal", str(address), policy)
    except FetchError as exc:
        code = exc.code
    assert code in (None, URI_REFUSED)
    allowed = code is None
    if non_public(address):
        assert allowed == (allow_private and listed), address
    elif not embeds_ipv4(address):  # 6to4 / NAT64 are judged by the IPv4 inside: stricter
        assert allowed, address
