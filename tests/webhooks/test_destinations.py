"""Where a webhook may send (SPEC 10.1): the URL rules and every address of its host."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vectorgate.webhooks.destinations import (
    MAX_URL_LENGTH,
    Destination,
    DestinationRefused,
    IPAddress,
    check_destination,
    refused_address,
)

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:4700:4700::1111"


def resolving(*addresses: str) -> object:
    """A resolver stub: every name has `addresses`; records what it was asked."""
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        asked.append((host, port))
        return list(addresses)

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


async def unresolvable(host: str, port: int) -> Sequence[str]:
    raise OSError(-2, "Name or service not known")


async def hanging(host: str, port: int) -> Sequence[str]:
    await asyncio.sleep(60)
    return []


def check(url: str, resolver: object = None, *, allow_private: bool = False) -> Destination:
    kwargs = {"resolver": resolver} if resolver is not None else {}
    return asyncio.run(check_destination(url, allow_private=allow_private, **kwargs))  # type: ignore[arg-type]


def refusal(url: str, resolver: object = None, *, allow_private: bool = False) -> str:
    with pytest.raises(DestinationRefused) as refused:
        check(url, resolver, allow_private=allow_private)
    return refused.value.reason


# --- addresses -------------------------------------------------------------------------

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.1.2.3", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", None),  # broadcast: refused, whichever name it gets
    ("100.64.0.1", "not globally routable"),  # shared (carrier-grade NAT)
    ("192.0.2.10", None),  # documentation
    ("198.51.100.7", None),
    ("203.0.113.9", None),
    ("2001:db8::1", None),
    ("198.18.0.1", None),  # benchmarking
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("2002:7f00:1::1", "loopback (embedded 127.0.0.1)"),  # 6to4
    ("2002:a00:1::1", "private (embedded 10.0.0.1)"),
]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_non_global_addresses_are_refused(address: str, kind: str | None) -> None:
    found = refused_address(ipaddress.ip_address(address))
    assert found is not None
    if kind is not None:
        assert found == kind


@pytest.mark.parametrize(
    "address", [PUBLIC_V4, "8.8.8.8", PUBLIC_V6, "::ffff:8.8.8.8", "2002:808:808::1"]
)
def test_global_addresses_are_allowed(address: str) -> None:
    assert refused_address(ipaddress.ip_address(address)) is None


@given(st.ip_addresses(v=4))
def test_a_mapped_address_is_judged_as_the_ipv4_it_carries(address: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    assert (refused_address(mapped) is None) == (refused_address(address) is None)


@given(st.ip_addresses())
def test_whatever_is_allowed_is_global_and_in_no_refused_class(address: IPAddress) -> None:
    if refused_address(address) is None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # judged as the IPv4 it carries
        assert address.is_global
        classes = ("private", "loopback", "link_local", "multicast", "reserved", "unspecified")
        assert [name for name in classes if getattr(address, f"is_{name}")] == []


@given(
    st.one_of(
        st.ip_addresses(network="10.0.0.0/8"),
        st.ip_addresses(network="172.16.0.0/12"),
        st.ip_addresses(network="192.168.0.0/16"),
        st.ip_addresses(network="127.0.0.0/8"),
        st.ip_addresses(network="169.254.0.0/16"),
        st.ip_addresses(network="100.64.0.0/10"),
        st.ip_addresses(network="fc00::/7"),
        st.ip_addresses(network="fe80::/10"),
        st.ip_addresses(network="ff00::/8"),
    )
)
def test_every_address_of_the_private_ranges_is_refused(address: IPAddress) -> None:
    assert refused_address(address) is not None


# --- URLs and names ----------------------------------------------------------------------


def test_a_public_host_is_checked_with_every_address_it_resolves_to() -> None:
    resolver = resolving(PUBLIC_V4, PUBLIC_V6, PUBLIC_V4)
    destination = check("https://hooks.example.com/in?x=1", resolver)
    assert destination == Destination(
        "https://hooks.example.com/in?x=1",
        "https",
        "hooks.example.com",
        443,
        (ipaddress.ip_address(PUBLIC_V4), ipaddress.ip_address(PUBLIC_V6)),
    )
    assert resolver.asked == [("hooks.example.com", 443)]  # type: ignore[attr-defined]


def test_the_port_is_the_urls() -> None:
    assert check("https://hooks.example.com:8443/", resolving(PUBLIC_V4)).port == 8443


@pytest.mark.parametrize(
    "answer", [["127.0.0.1"], ["10.0.0.5"], ["169.254.169.254"], ["::1"], ["::ffff:127.0.0.1"]]
)
def test_a_name_resolving_to_a_private_address_is_refused(answer: list[str]) -> None:
    reason = refusal("https://innocent.example.com/", resolving(*answer))
    assert "innocent.example.com resolves to" in reason
    assert "not a public address" in reason


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    reason = refusal("https://mixed.example.com/", resolving(PUBLIC_V4, "10.0.0.1", PUBLIC_V6))
    assert "10.0.0.1" in reason


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1/", "https://10.1.1.1/", "https://[::1]/", "https://[fe80::1]:8443/"]
)
def test_an_address_literal_is_judged_without_a_lookup(url: str) -> None:
    resolver = resolving(PUBLIC_V4)
    assert "not a public address" in refusal(url, resolver)
    assert resolver.asked == []  # type: ignore[attr-defined]


def test_a_public_address_literal_is_allowed() -> None:
    destination = check(f"https://[{PUBLIC_V6}]/hook", resolving())
    assert destination.addresses == (ipaddress.ip_address(PUBLIC_V6),)


def test_a_host_that_does_not_resolve_is_refused() -> None:
    assert "does not resolve" in refusal("https://nowhere.invalid/", unresolvable)
    assert "does not resolve" in refusal("https://empty.example.com/", resolving())


def test_a_slow_resolver_is_given_up_on() -> None:
    async def run() -> str:
        with pytest.raises(DestinationRefused) as refused:
            await check_destination(
                "https://slow.example.com/", allow_private=False, resolver=hanging, timeout_s=0.05
            )
        return refused.value.reason

    assert "did not resolve within" in asyncio.run(run())


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://hooks.example.com/", "https://"),
        ("ftp://hooks.example.com/", "https://"),
        ("hooks.example.com/in", "https://"),
        ("https://user:pass@hooks.example.com/", "user information"),
        ("https://user@hooks.example.com/", "user information"),
        ("https://hooks.example.com/in#frag", "fragment"),
        ("https:///no-host", "no host"),
        ("https://hooks.example.com:99999/", "not a valid URL"),
        ("https://hooks.example.com/a b", "printable ASCII"),
        ("https://hööks.example.com/", "printable ASCII"),
        ("https://hooks.example.com/\x00", "printable ASCII"),
        ("https://hooks.example.com/" + "a" * MAX_URL_LENGTH, "longer than"),
    ],
)
def test_urls_breaking_the_rules_are_refused_before_any_lookup(url: str, said: str) -> None:
    resolver = resolving(PUBLIC_V4)
    assert said in refusal(url, resolver)
    assert resolver.asked == []  # type: ignore[attr-defined]


def test_allow_private_lifts_the_address_rule_and_admits_http() -> None:
    destination = check("http://127.0.0.1:8080/hook", allow_private=True)
    assert destination.addresses == (ipaddress.ip_address("127.0.0.1"),)
    assert destination.port == 8080
    named = check("https://receiver.internal/", resolving("10.0.0.7"), allow_private=True)
    assert named.addresses == (ipaddress.ip_address("10.0.0.7"),)


def test_allow_private_keeps_the_other_rules() -> None:
    assert "user information" in refusal("http://u:p@127.0.0.1/", allow_private=True)
    assert "https:// or http://" in refusal("ftp://127.0.0.1/", allow_private=True)
    assert "does not resolve" in refusal("http://x.invalid/", unresolvable, allow_private=True)


def test_the_system_resolver_resolves_localhost_and_it_is_refused() -> None:
    reason = refusal("https://localhost/hook")
    assert "localhost resolves to" in reason
    assert "loopback" in reason


def test_name_servers_that_never_answer_do_not_stall_the_default_thread_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attack: many webhooks naming hosts whose lookups hang (getaddrinfo cannot be
    cancelled, its thread stays busy past our timeout). The victim: work that the service
    does in the default thread pool (multipart and base64 intake), timed meanwhile."""
    release = threading.Event()

    def hanging_getaddrinfo(*_args: object, **_kwargs: object) -> list[object]:
        release.wait(10)
        raise OSError("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_getaddrinfo)

    async def run() -> float:
        attack = [
            check_destination(f"https://h{i}.example.com/", allow_private=False, timeout_s=0.2)
            for i in range(20)
        ]
        attack_done = asyncio.gather(*attack, return_exceptions=True)
        await asyncio.sleep(0.3)  # every lookup has timed out; their threads still hang
        started = time.perf_counter()
        await asyncio.to_thread(lambda: None)  # the victim's turn in the default pool
        waited = time.perf_counter() - started
        release.set()
        refusals = await attack_done
        assert all(isinstance(r, DestinationRefused) for r in refusals), refusals
        return waited

    try:
        assert asyncio.run(run()) < 0.5
    finally:
        release.set()
