"""Where a push may go: the one parser of callback URLs and the address policy. Pure, except
for the resolver it is handed.

``parse_callback`` is used both when a subscription is made and when a delivery is sent, and the
``CallbackTarget`` it returns is the only thing the sender accepts: the host that was checked is
the host whose addresses are resolved and checked, and the address that was checked is the one
connected to (``shared.push.transport``). No second parser (``urlsplit``, requests, urllib3)
ever reads the URL, so the classic disagreements between parsers (``\\``, ``@``, IDNA mappings,
trailing dots, numeric hosts) cannot send a delivery somewhere the check did not look.

The parser is deliberately narrow: printable ASCII only (hosts in their punycode form), no
backslash, no userinfo, no fragment, port 443 only, a host of letter-digit-hyphen labels ending
in an alphabetic top-level label (so no IP literal in any spelling: dotted, decimal, octal,
hex, short forms, IPv6, bracketed), punycode labels that survive IDNA decoding and re-encoding,
no trailing dot, at most 2,048 characters. The host must then match ``API_PUSH_HOST_SUFFIXES``.

``check_addresses`` resolves the host (the injected ``Resolver``) and refuses when any address
is loopback, private, link-local, shared (CGNAT), multicast, reserved, unspecified, a tunnelling
or translation form that embeds an IPv4 address, or a known cloud metadata/platform address.
Refusing when *any* address is bad (instead of picking a good one) keeps a DNS answer that mixes
a public and an internal address from ever reaching the internal one.

The emulator-only ``API_PUSH_ALLOW_LOCAL_RECEIVER`` admits exactly one more target: the host
``localhost`` on any port, which must resolve to loopback addresses only.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from shared.core.errors import CallbackRefusedError

MAX_URL = 2048
HTTPS_PORT = 443
LOCAL_HOST = "localhost"
#: addresses of cloud instance metadata and platform services: never a webhook
#: (169.254.169.254 Azure IMDS / AWS / GCP, 168.63.129.16 Azure's WireServer and DNS,
#: fd00:ec2::254 AWS IMDS over IPv6, 169.254.170.2 ECS task metadata,
#: 100.100.100.200 Alibaba Cloud metadata, 192.0.0.192 Oracle Cloud metadata)
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "168.63.129.16",
        "fd00:ec2::254",
        "169.254.170.2",
        "100.100.100.200",
        "192.0.0.192",
    )
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT
#: RFC 6890 "IETF protocol assignments": not globally reachable (Python's is_global admits most)
_PROTOCOL = ipaddress.ip_network("192.0.0.0/24")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TLD = re.compile(r"^([a-z]{2,63}|xn--[a-z0-9-]{1,59})$")
#: RFC 3986 pchar plus "/" and "?" (path and query), percent escapes checked apart
_PATH_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%"
)
_HEX = frozenset("0123456789abcdefABCDEF")

#: ``(host, port)`` -> the addresses it resolves to, as text
Resolver = Callable[[str, int], Sequence[str]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    """A checked callback: host (lowercase ASCII), port, and the path with its query.

    ``path`` usually holds the receiver's ``sig`` (a credential): ``repr`` and ``redacted``
    never show it.
    """

    host: str
    port: int
    path: str = field(repr=False)
    local: bool = False

    @property
    def url(self) -> str:
        """The URL as it is sent (a secret: never log it)."""
        return f"https://{self.authority}{self.path}"

    @property
    def authority(self) -> str:
        """``host`` or ``host:port`` (the ``Host`` header)."""
        return self.host if self.port == HTTPS_PORT else f"{self.host}:{self.port}"

    def redacted(self) -> str:
        """What may appear in logs and answers: scheme and authority only."""
        return f"https://{self.authority}/..."


def parse_callback(url: object, *, allowed: Sequence[str], allow_local: bool) -> CallbackTarget:
    """Check a callback URL and return what a delivery is sent to.

    Raises:
        CallbackRefusedError: naming the first problem (never echoing the URL).
    """
    if not isinstance(url, str) or not url:
        raise CallbackRefusedError("the callback URL must be a non-empty string")
    if len(url) > MAX_URL:
        raise CallbackRefusedError(f"the callback URL is longer than {MAX_URL} characters")
    if "\\" in url:
        raise CallbackRefusedError("the callback URL must not contain a backslash")
    if any(not ("!" <= c <= "~") for c in url):
        raise CallbackRefusedError(
            "the callback URL must be printable ASCII without spaces (percent-encode the path "
            "and query; write an international host name in its xn-- form)"
        )
    if url[:8].lower() != "https://":
        raise CallbackRefusedError("the callback URL must be an https:// URL")
    rest = url[8:]
    if "#" in rest:
        raise CallbackRefusedError("the callback URL must not carry a fragment (#)")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        raise CallbackRefusedError("the callback URL must not carry credentials (user@host)")
    if authority.startswith("["):
        raise CallbackRefusedError("the callback URL must name a host, not an IP address")
    host, port = _split_port(authority)
    local = allow_local and host == LOCAL_HOST
    if port != HTTPS_PORT and not local:
        raise CallbackRefusedError("the callback URL must use the https port (443)")
    _check_host(host, local)
    if not host_allowed(host, allowed):
        raise CallbackRefusedError(
            f"the callback host '{host}' is not allowed (allowed: {', '.join(allowed)}; see "
            "API_PUSH_HOST_SUFFIXES)"
        )
    return CallbackTarget(host, port, _check_path(tail), local)


def _split_port(authority: str) -> tuple[str, int]:
    host, colon, digits = authority.partition(":")
    if not colon:
        return host.lower(), HTTPS_PORT
    if not digits.isdigit() or len(digits) > 5 or ":" in digits:
        raise CallbackRefusedError("the callback URL has a malformed port")
    port = int(digits)
    if not 0 < port < 65536:
        raise CallbackRefusedError("the callback URL has a malformed port")
    return host.lower(), port


def _check_host(host: str, local: bool) -> None:
    if not host:
        raise CallbackRefusedError("the callback URL has no host")
    if host.endswith("."):
        raise CallbackRefusedError("the callback host must not end with a dot")
    if len(host) > 253:
        raise CallbackRefusedError("the callback host is longer than 253 characters")
    if _is_ip_literal(host):
        raise CallbackRefusedError("the callback URL must name a host, not an IP address")
    if local:
        return
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise CallbackRefusedError(
            "the callback host must be a DNS name of letters, digits and hyphens"
        )
    if not _TLD.match(labels[-1]):
        raise CallbackRefusedError("the callback URL must name a host, not an IP address")
    for label in labels:
        if label[2:4] == "--" and not _idna_round_trips(label):
            raise CallbackRefusedError(
                f"the callback host label '{label}' does not survive IDNA normalisation"
            )


def _is_ip_literal(host: str) -> bool:
    """Any spelling a resolver or socket library would take as an address."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(host)  # glibc: "1", "1.2", "0x7f.1", "0177.0.0.1", ...
        return True
    except OSError:
        return False


def _idna_round_trips(label: str) -> bool:
    if not label.startswith("xn--"):
        return False  # "ab--c": reserved for future ACE prefixes (RFC 5891 4.2.3.1)
    try:
        decoded = label.encode("ascii").decode("idna")
        return decoded.encode("idna").decode("ascii") == label and decoded != label
    except UnicodeError:
        return False


def _check_path(tail: str) -> str:
    path = tail or "/"
    if path.startswith("?"):
        path = "/" + path
    for index, char in enumerate(path):
        if char not in _PATH_CHARS:
            raise CallbackRefusedError("the callback URL's path or query has a character to escape")
        if char == "%" and not (
            index + 2 < len(path) and path[index + 1] in _HEX and path[index + 2] in _HEX
        ):
            raise CallbackRefusedError("the callback URL has a malformed percent escape")
    return path


def host_allowed(host: str, suffixes: Iterable[str]) -> bool:
    """``host`` equals an entry, or ends with an entry that starts with a dot (and is longer)."""
    for suffix in suffixes:
        if suffix.startswith("."):
            if host.endswith(suffix) and len(host) > len(suffix):
                return True
        elif host == suffix:
            return True
    return False


def address_problem(address: Address) -> str | None:
    """Why ``address`` may not receive a push (None: a public unicast address)."""
    if address in METADATA:
        return "a cloud metadata or platform address"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            inner = address_problem(address.ipv4_mapped)
            return f"an IPv6 form of {inner}" if inner else None
        tunnel = address.sixtofour is not None or address.teredo is not None
        if tunnel or any(address in net for net in _NAT64):
            return "a tunnelling or translation address (it embeds an IPv4 address)"
        if address.is_site_local:
            return "a site-local address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "an unspecified address"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("::/96"):
        return "an IPv4-compatible IPv6 address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global or address in _PROTOCOL:
        return "a reserved address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for ``host`` (TCP), in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_addresses(target: CallbackTarget, resolver: Resolver) -> tuple[Address, ...]:
    """Resolve the target's host once and check every address.

    Raises:
        CallbackRefusedError: an address is not allowed, or (``retryable``) the host did not
            resolve.
    """
    try:
        answers = resolver(target.host, target.port)
    except (OSError, UnicodeError) as exc:
        raise CallbackRefusedError(
            f"the callback host '{target.host}' does not resolve ({type(exc).__name__})",
            retryable=True,
        ) from None
    addresses: list[Address] = []
    for text in answers:
        try:
            address = ipaddress.ip_address(str(text).split("%", 1)[0])
        except ValueError:
            raise CallbackRefusedError(
                f"the callback host '{target.host}' resolved to something that is not an address"
            ) from None
        if target.local:
            problem = None if address.is_loopback else "not a loopback address (local receiver)"
        else:
            problem = address_problem(address)
        if problem:
            raise CallbackRefusedError(f"the callback host '{target.host}' resolves to {problem}")
        addresses.append(address)
    if not addresses:
        raise CallbackRefusedError(
            f"the callback host '{target.host}' does not resolve", retryable=True
        )
    return tuple(addresses)
