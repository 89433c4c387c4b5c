"""Where outgoing requests may go: the rules of TRACKER_WEBHOOK_ALLOWED_HOSTS
(and of any other ``*_ALLOWED_HOSTS`` setting).

A policy is a comma list of rules; a target passes when one rule lets it:

- ``external``: public unicast addresses;
- ``private``: 10/8, 172.16/12, 192.168/16, 100.64/10 and fc00::/7;
- ``loopback``: 127/8 and ::1;
- ``*``: any address;
- a CIDR block (``10.1.0.0/16``) or one address: the addresses in it;
- a host name, ``*`` matching any run of characters (``*.example.com``): URLs
  with that host name, whatever it resolves to.

Address rules judge the address actually connected to (after DNS), so a name
that resolves somewhere else next time (DNS rebinding) gains nothing.
Link-local addresses (169.254/16, where cloud metadata services live, and
fe80::/10) pass only a CIDR rule that contains them. An IPv6 address that
carries an IPv4 one (``::ffff:127.0.0.1``, 6to4, NAT64) is judged as that IPv4
address.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from tracker.exceptions import ConfigError, InvalidInput, TrackerError

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

#: the policy when the variable is not set
DEFAULT_ALLOWED_HOSTS = "external"
KEYWORDS = frozenset({"external", "private", "loopback", "*"})

_PRIVATE = tuple(
    ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
_LINK_LOCAL = (ip_network("169.254.0.0/16"), ip_network("fe80::/10"))
_NAT64 = ip_network("64:ff9b::/96")
_HOST_GLOB = re.compile(r"[a-z0-9_*]([a-z0-9_*.-]{0,251}[a-z0-9_*])?\.?")
#: how many refused addresses a reason names
_REASON_ADDRESSES = 3


class AddressRefused(TrackerError):
    """A request would go to an address the policy does not allow."""


@dataclass(frozen=True)
class HostPolicy:
    """A parsed ``*_ALLOWED_HOSTS`` value (see the module docstring)."""

    text: str
    variable: str
    keywords: frozenset[str]
    networks: tuple[IPNetwork, ...]
    host_globs: tuple[re.Pattern[str], ...]

    def __str__(self) -> str:
        return f"{self.variable}={self.text}"

    def allows(self, host: str | None, address: str | IPAddress) -> bool:
        """Whether a URL with this host name may connect to this address."""
        ip = to_address(address)
        if any(ip in n or _embedded(ip) in n for n in self.networks):
            return True
        kind = address_kind(ip)
        if kind == "link-local":
            return False
        if "*" in self.keywords or kind in self.keywords:
            return True
        return host is not None and self.matches_host(host)

    def matches_host(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return any(glob.fullmatch(name) for glob in self.host_globs)

    def refusal(self, host: str, addresses: Iterable[str | IPAddress]) -> str:
        """Why a host resolving only to refused ``addresses`` may not be reached."""
        ips = list(dict.fromkeys(to_address(a) for a in addresses))
        named = ", ".join(f"{ip} ({address_kind(ip)})" for ip in ips[:_REASON_ADDRESSES])
        if len(ips) > _REASON_ADDRESSES:
            named += ", …"
        if [str(ip) for ip in ips] == [host.strip("[]")]:
            return f"{named} is not allowed by {self}"
        return f"{host} is {named}: not allowed by {self}"

    def check_literal(self, host: str) -> None:
        """Refuse a host that is a literal address the policy does not allow
        (names can only be judged when they are resolved, at delivery)."""
        try:
            ip = to_address(host.strip("[]"))
        except ValueError:
            return
        if not self.allows(host, ip):
            raise InvalidInput(self.refusal(host, [ip]))


def parse_policy(text: str | None, variable: str) -> HostPolicy:
    """A policy from a setting's value; empty or unset means the default."""
    text = (text or "").strip() or DEFAULT_ALLOWED_HOSTS
    keywords: set[str] = set()
    networks: list[IPNetwork] = []
    globs: list[re.Pattern[str]] = []
    for raw in text.split(","):
        rule = raw.strip().lower()
        if not rule:
            continue
        if rule in KEYWORDS:
            keywords.add(rule)
        elif (network := _network(rule, variable)) is not None:
            networks.append(network)
        elif _HOST_GLOB.fullmatch(rule):
            globs.append(_glob(rule))
        else:
            raise ConfigError(
                f"{variable}: {raw.strip()!r} is not external, private, loopback, *,"
                " a CIDR block or a host name"
            )
    if not (keywords or networks or globs):
        raise ConfigError(f"{variable} has no rule: give e.g. {DEFAULT_ALLOWED_HOSTS}")
    return HostPolicy(text, variable, frozenset(keywords), tuple(networks), tuple(globs))


def address_kind(address: IPAddress) -> str:
    """external, private, loopback, link-local, multicast, unspecified or reserved."""
    ip = _embedded(address)
    if any(ip in n for n in _LINK_LOCAL):
        return "link-local"
    if ip.is_loopback:
        return "loopback"
    if any(ip in n for n in _PRIVATE):
        return "private"
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_global and not ip.is_reserved:
        return "external"
    return "reserved"


def to_address(value: str | IPAddress) -> IPAddress:
    """An address object; raises ValueError for text that is not an address."""
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    return ip_address(value)


def _embedded(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), else itself."""
    if isinstance(address, IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _network(rule: str, variable: str) -> IPNetwork | None:
    """A CIDR block or single address rule; None when the rule is neither."""
    try:
        return ip_network(rule, strict=False)
    except ValueError:
        if "/" in rule or ":" in rule or rule.replace(".", "").isdigit():
            raise ConfigError(f"{variable}: {rule!r} is not an address or a CIDR block") from None
        return None


def _glob(rule: str) -> re.Pattern[str]:
    name = rule.rstrip(".")
    return re.compile(".*".join(re.escape(part) for part in name.split("*")))
