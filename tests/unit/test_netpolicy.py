"""TRACKER_WEBHOOK_ALLOWED_HOSTS rules: parsing, what each rule lets through, and
link-local addresses passing only an explicit CIDR."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.exceptions import ConfigError, InvalidInput
from tracker.net.policy import address_kind, parse_policy

V = "TRACKER_WEBHOOK_ALLOWED_HOSTS"


def policy(text: str | None):  # type: ignore[no-untyped-def]
    return parse_policy(text, V)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", "external"),
        ("2606:4700:4700::1111", "external"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00:ec2::254", "private"),  # AWS metadata over IPv6: private, not external
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: judged as the IPv4 address
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "reserved"),  # documentation range
        ("::7f00:1", "reserved"),
        ("172.32.0.1", "external"),
    ],
)
def test_address_kinds(address: str, kind: str) -> None:
    assert address_kind(ip_address(address)) == kind


@pytest.mark.parametrize(
    ("rules", "allowed", "refused"),
    [
        ("external", ["8.8.8.8", "2606:4700::1"], ["127.0.0.1", "10.0.0.1", "169.254.169.254"]),
        (None, ["8.8.8.8"], ["127.0.0.1", "192.168.0.1", "::1", "0.0.0.0"]),
        ("", ["8.8.8.8"], ["127.0.0.1"]),
        ("private", ["10.0.0.1", "fd12::1", "100.100.0.1"], ["8.8.8.8", "127.0.0.1"]),
        ("loopback", ["127.0.0.1", "::1", "::ffff:127.0.0.1"], ["8.8.8.8", "10.0.0.1"]),
        ("*", ["8.8.8.8", "10.0.0.1", "127.0.0.1", "0.0.0.0"], ["169.254.169.254", "fe80::1"]),
        ("10.1.0.0/16", ["10.1.2.3"], ["10.2.0.1", "8.8.8.8"]),
        ("169.254.169.254", ["169.254.169.254"], ["169.254.169.253"]),
        ("169.254.0.0/16, fe80::/10", ["169.254.1.1", "fe80::5"], ["127.0.0.1"]),
        (" External , LOOPBACK ,", ["8.8.8.8", "127.0.0.1"], ["10.0.0.1"]),
    ],
)
def test_what_each_rule_lets_through(
    rules: str | None, allowed: list[str], refused: list[str]
) -> None:
    p = policy(rules)
    for address in allowed:
        assert p.allows(None, address), address
    for address in refused:
        assert not p.allows(None, address), address


def test_host_globs_match_the_url_host_name_whatever_it_resolves_to() -> None:
    p = policy("*.hooks.example.com, receiver.internal")
    assert p.allows("a.hooks.example.com", "10.0.0.1")
    assert p.allows("A.B.Hooks.Example.COM.", "127.0.0.1")  # case, trailing dot, nesting
    assert p.allows("receiver.internal", "192.168.0.9")
    assert not p.allows("hooks.example.com", "10.0.0.1")  # "*." needs something before
    assert not p.allows("evil.com", "10.0.0.1")
    assert not p.allows("receiver.internal.evil.com", "10.0.0.1")
    assert not p.allows(None, "10.0.0.1")
    # link-local never passes by name
    assert not p.allows("a.hooks.example.com", "169.254.169.254")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("intranet zone", "'intranet zone' is not external, private, loopback, *,"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an address or a CIDR block"),
        ("300.1.1.1", "'300.1.1.1' is not an address or a CIDR block"),
        ("fe80::zz", "is not an address or a CIDR block"),
        (",", "has no rule"),
        ("http://example.com", "'http://example.com' is not"),
        ("exa_mple!.com", "is not external"),
    ],
)
def test_bad_values_are_config_errors_naming_the_variable(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=V) as caught:
        policy(text)
    assert message in str(caught.value)


def test_literal_addresses_are_judged_when_a_url_is_given() -> None:
    p = policy("external")
    p.check_literal("8.8.8.8")
    p.check_literal("hooks.example.com")  # a name: judged at delivery
    with pytest.raises(InvalidInput, match=r"169.254.169.254 \(link-local\) is not allowed"):
        p.check_literal("169.254.169.254")
    with pytest.raises(InvalidInput, match=r"::1 \(loopback\) is not allowed by " + V):
        p.check_literal("[::1]")


# -- properties --------------------------------------------------------------------------

link_local_v4 = st.integers(0, 2**16 - 1).map(lambda n: IPv4Address((169 << 24) + (254 << 16) + n))
link_local_v6 = st.integers(0, 2**118 - 1).map(lambda n: IPv6Address((0xFE80 << 112) + n))
any_address = st.ip_addresses()


@given(
    st.one_of(link_local_v4, link_local_v6),
    st.lists(st.sampled_from(["external", "private", "loopback", "*", "*.com", "*"]), min_size=1),
)
def test_link_local_passes_no_keyword_and_no_name(address: object, rules: list[str]) -> None:
    assert not policy(",".join(rules)).allows("metadata.google.internal.com", address)  # type: ignore[arg-type]


@given(any_address)
def test_every_address_has_one_kind_and_external_is_exactly_what_the_default_allows(
    address: IPv4Address | IPv6Address,
) -> None:
    kind = address_kind(address)
    assert kind in {
        "external",
        "private",
        "loopback",
        "link-local",
        "multicast",
        "unspecified",
        "reserved",
    }
    assert policy(None).allows(None, address) == (kind == "external")
    assert policy("*").allows(None, address) == (kind != "link-local")


@given(st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 32))
def test_a_cidr_rule_lets_exactly_its_block_through(
    base: IPv4Address, other: IPv4Address, prefix: int
) -> None:
    block = ip_network(f"{base}/{prefix}", strict=False)
    assert policy(f"{base}/{prefix}").allows(None, other) == (other in block)


@given(st.text(max_size=60))
def test_parsing_arbitrary_text_raises_nothing_but_config_errors(text: str) -> None:
    try:
        policy(text)
    except ConfigError as exc:
        assert str(exc).startswith(V)
