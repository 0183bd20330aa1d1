"""A small authoritative DNS server on loopback: the stand-in for a Kubernetes headless Service.

It answers A (and AAAA) queries for the names it holds with their current addresses, over UDP and
TCP, from a thread; ``set(name, addresses)`` changes an answer at once (as endpoints change when a
pod becomes ready or starts terminating). Every query is recorded with its time, so a test can see
when each gateway asked. Messages are parsed and built with dnspython; unknown names get NXDOMAIN.

    with DnsServer() as server:                     # 127.0.0.1, a free port
        server.set("models.test", ["127.0.0.2", "127.0.0.3"])
        target = f"dns://127.0.0.1:{server.port}/models.test:8500"
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import threading
import time
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

TTL_S = 1  # like CoreDNS's few seconds for a headless Service: answers are not cached for long


@dataclass(frozen=True)
class Query:
    t: float  # wall clock
    name: str
    kind: str  # A, AAAA, ...
    peer: str


class DnsServer:
    """Serves ``names`` (name -> addresses) on ``host``; UDP and TCP on the same port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._names: dict[dns.name.Name, list[str]] = {}
        self._lock = threading.Lock()
        self.queries: list[Query] = []
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._udp.bind((host, port))
        self.port = int(self._udp.getsockname()[1])
        self._tcp.bind((host, self.port))
        self._tcp.listen(16)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve_udp, name="dns-udp", daemon=True),
            threading.Thread(target=self._serve_tcp, name="dns-tcp", daemon=True),
        ]

    def start(self) -> DnsServer:
        for thread in self._threads:
            thread.start()
        return self

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        for sock in (self._udp, self._tcp):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(2)

    def set(self, name: str, addresses: list[str]) -> None:
        """The answer for ``name`` from now on (an empty list: the name exists with no address)."""
        for address in addresses:
            ipaddress.ip_address(address)  # ValueError for anything else
        with self._lock:
            self._names[dns.name.from_text(name)] = list(addresses)

    def addresses(self, name: str) -> list[str]:
        with self._lock:
            return list(self._names.get(dns.name.from_text(name), []))

    def answer(self, wire: bytes, peer: str) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        self.queries.append(Query(time.time(), question.name.to_text(), dns.rdatatype.to_text(question.rdtype), peer))
        with self._lock:
            addresses = self._names.get(question.name)
        if addresses is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response.to_wire()
        version = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}.get(question.rdtype)
        matching = [a for a in addresses if ipaddress.ip_address(a).version == version]
        if matching:
            kind = dns.rdatatype.to_text(question.rdtype)
            response.answer.append(dns.rrset.from_text_list(question.name, TTL_S, "IN", kind, matching))
        return response.to_wire()

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._udp.recvfrom(4096)
            except OSError:
                return
            with contextlib.suppress(Exception):  # a malformed packet gets no answer
                self._udp.sendto(self.answer(wire, f"{peer[0]}:{peer[1]}"), peer)

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                connection, peer = self._tcp.accept()
            except OSError:
                return
            with connection, contextlib.suppress(Exception):
                connection.settimeout(2)
                while True:
                    head = _read(connection, 2)
                    if head is None:
                        break
                    wire = _read(connection, struct.unpack("!H", head)[0])
                    if wire is None:
                        break
                    reply = self.answer(wire, f"{peer[0]}:{peer[1]}")
                    connection.sendall(struct.pack("!H", len(reply)) + reply)


def _read(connection: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
