"""Upstream targets, and how the addresses behind a ``dns:`` target are found.

A target is one of (gRPC's own URI syntax for the ``dns`` scheme):

- ``host:port``: one channel; grpc resolves the name and spreads over its addresses (``round_robin``).
- ``dns:///name:port``: the gateway resolves ``name`` itself with the system resolver (``/etc/hosts``,
  ``/etc/resolv.conf`` search domains, as any program on the host) every ``resolve_s``, and keeps one
  channel per address, so each address has its own ejection, retries go to another address, and
  ``/metrics`` counts calls per address.
- ``dns://SERVER[:PORT]/name:port``: the same, asking the DNS server at ``SERVER`` (an IP address;
  port 53 by default) directly.

gRPC's own DNS resolver re-resolves only when a connection drops (at most every 30 s by default), so a
pod added behind a Kubernetes headless Service would wait for some connection to close before it got
any traffic; resolving here bounds that by ``resolve_s``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")
_DNS = re.compile(r"^dns://(?P<authority>[^/]*)/(?P<target>.+)$")
_AUTHORITY = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[0-9.]+)(?::(?P<port>[0-9]{1,5}))?$")


class ResolveError(Exception):
    """The name could not be resolved this time (timeout, server failure): keep the last addresses."""


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target. ``dns`` targets are resolved by the gateway; ``nameserver`` None: the system's."""

    text: str
    host: str
    port: int
    dns: bool = False
    nameserver: str | None = None
    nameserver_port: int = 53

    @property
    def authority(self) -> str:
        """``host:port`` as the channel's ``:authority`` (what grpc would send for the name)."""
        return f"{self.host}:{self.port}"


def _port(text: str, what: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"{what} {port} is not between 1 and 65535")
    return port


def parse_target(text: str) -> TargetSpec:
    """``host:port``, ``dns:///name:port`` or ``dns://server[:port]/name:port``; ValueError names what is wrong."""
    match = _DNS.match(text)
    if match is None:
        if text.startswith("dns:"):
            raise ValueError(f"target {text!r} is not dns:///name:port or dns://server[:port]/name:port")
        plain = _HOST_PORT.match(text)
        if plain is None:
            raise ValueError(f"target {text!r} is not host:port, dns:///name:port or dns://server[:port]/name:port")
        return TargetSpec(text, plain.group(1), _port(plain.group(2), "port"))
    plain = _HOST_PORT.match(match.group("target"))
    if plain is None or plain.group(1).startswith("["):
        raise ValueError(f"target {text!r}: after the authority comes name:port (the port is required)")
    authority = match.group("authority")
    nameserver, nameserver_port = None, 53
    if authority:
        server = _AUTHORITY.match(authority)
        if server is None:
            raise ValueError(f"target {text!r}: the DNS server {authority!r} must be an IP address[:port]")
        nameserver = server.group("host").strip("[]")
        try:
            ipaddress.ip_address(nameserver)
        except ValueError:
            raise ValueError(f"target {text!r}: the DNS server {nameserver!r} is not an IP address") from None
        if server.group("port"):
            nameserver_port = _port(server.group("port"), "DNS server port")
    return TargetSpec(text, plain.group(1), _port(plain.group(2), "port"), True, nameserver, nameserver_port)


def address(host: str, port: int) -> str:
    """``ip:port`` as gRPC takes it (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def resolve(spec: TargetSpec, timeout: float) -> list[str]:
    """The addresses (``ip:port``, sorted) the name has now. An empty list means the name has none
    (NXDOMAIN, no records); ResolveError means no answer could be had."""
    if spec.nameserver is None:
        hosts = await _system(spec.host, timeout)
    else:
        hosts = await _ask(spec.host, spec.nameserver, spec.nameserver_port, timeout)
    return sorted({address(host, spec.port) for host in hosts}, key=_order)


def _order(text: str) -> tuple[int, bytes, str]:
    host = text.rsplit(":", 1)[0].strip("[]")
    parsed = ipaddress.ip_address(host)
    return parsed.version, parsed.packed, text


async def _system(host: str, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            found = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise ResolveError(f"{host}: no answer within {timeout:g} s") from None
    except socket.gaierror as error:
        if error.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            return []
        raise ResolveError(f"{host}: {error.strerror}") from None
    return [str(sockaddr[0]) for family, *_, sockaddr in found if family in (socket.AF_INET, socket.AF_INET6)]


async def _ask(host: str, server: str, port: int, timeout: float) -> list[str]:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(server, port)]
    name = host if host.endswith(".") else host + "."
    try:
        answers = await asyncio.gather(
            *(_records(resolver, name, kind, timeout) for kind in (dns.rdatatype.A, dns.rdatatype.AAAA))
        )
    except dns.exception.DNSException as error:  # timeout, SERVFAIL, refused, no server answered
        raise ResolveError(f"{host} from {address(server, port)}: {error}") from None
    return [record for records in answers for record in records]


async def _records(
    resolver: dns.asyncresolver.Resolver, name: str, kind: dns.rdatatype.RdataType, timeout: float
) -> list[str]:
    try:
        answer = await resolver.resolve(name, kind, search=False, lifetime=timeout, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return []
    return [record.address for record in answer.rrset] if answer.rrset is not None else []
