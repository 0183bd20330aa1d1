"""dns: targets: parsing, resolution against a real DNS server on loopback, and the upstream's target set."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from loadtest.scaleout.dnsserver import DnsServer
from serving.gateway.config import ConfigError, load_settings
from serving.gateway.discovery import ResolveError, TargetSpec, parse_target, resolve
from serving.gateway.metrics import Metrics
from serving.gateway.upstream import Upstream


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("tfs:8500", TargetSpec("tfs:8500", "tfs", 8500)),
        ("[::1]:8500", TargetSpec("[::1]:8500", "[::1]", 8500)),
        ("dns:///tfserving:8500", TargetSpec("dns:///tfserving:8500", "tfserving", 8500, True)),
        (
            "dns://127.0.0.1:5353/models.test:8500",
            TargetSpec("dns://127.0.0.1:5353/models.test:8500", "models.test", 8500, True, "127.0.0.1", 5353),
        ),
        (
            "dns://10.0.0.10/tfs.ns.svc:9000",
            TargetSpec("dns://10.0.0.10/tfs.ns.svc:9000", "tfs.ns.svc", 9000, True, "10.0.0.10"),
        ),
        ("dns://[::1]:53/tfs:8500", TargetSpec("dns://[::1]:53/tfs:8500", "tfs", 8500, True, "::1", 53)),
    ],
)
def test_targets_parse(text: str, spec: TargetSpec) -> None:
    assert parse_target(text) == spec


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tfs", "target 'tfs' is not host:port, dns:///name:port or dns://server[:port]/name:port"),
        ("dns:///tfs", "target 'dns:///tfs': after the authority comes name:port (the port is required)"),
        ("dns:tfs:8500", "target 'dns:tfs:8500' is not dns:///name:port or dns://server[:port]/name:port"),
        (
            "dns://kube-dns/tfs:8500",
            "target 'dns://kube-dns/tfs:8500': the DNS server 'kube-dns' must be an IP address[:port]",
        ),
        ("dns://1.2.3.4:0/tfs:8500", "DNS server port 0 is not between 1 and 65535"),
        ("tfs:70000", "port 70000 is not between 1 and 65535"),
    ],
)
def test_a_bad_target_is_named_in_the_config_error(target: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(None, upstreams={"default": {"targets": [target]}})
    assert str(error.value) == f"upstreams.default.targets: {message}"


def test_resolve_s_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"^upstreams\.default\.resolve_s: Input should be greater than 0$"):
        load_settings(None, upstreams={"default": {"targets": ["dns:///tfs:8500"], "resolve_s": 0}})


def test_a_dns_server_is_asked_and_its_answer_followed(dns_server: DnsServer) -> None:
    spec = parse_target(f"dns://127.0.0.1:{dns_server.port}/models.test:8500")
    dns_server.set("models.test", ["127.0.0.3", "127.0.0.2", "::1"])
    assert asyncio.run(resolve(spec, 2.0)) == ["127.0.0.2:8500", "127.0.0.3:8500", "[::1]:8500"]
    dns_server.set("models.test", ["127.0.0.3"])
    assert asyncio.run(resolve(spec, 2.0)) == ["127.0.0.3:8500"]
    dns_server.set("models.test", [])
    assert asyncio.run(resolve(spec, 2.0)) == []
    assert asyncio.run(resolve(parse_target(f"dns://127.0.0.1:{dns_server.port}/other.test:8500"), 2.0)) == []
    asked = {(query.name, query.kind) for query in dns_server.queries}
    assert asked == {("models.test.", "A"), ("models.test.", "AAAA"), ("other.test.", "A"), ("other.test.", "AAAA")}


def test_no_answer_is_an_error_not_an_empty_answer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        spec = parse_target(f"dns://127.0.0.1:{silent.getsockname()[1]}/models.test:8500")
        with pytest.raises(ResolveError, match=r"^models\.test from 127\.0\.0\.1:\d+: The resolution lifetime expired"):
            asyncio.run(resolve(spec, 0.3))


def test_the_system_resolver_reads_etc_hosts() -> None:
    addresses = asyncio.run(resolve(parse_target("dns:///localhost:8500"), 5.0))
    assert "127.0.0.1:8500" in addresses
    assert asyncio.run(resolve(parse_target("dns:///no-such-host.invalid:8500"), 5.0)) == []


def test_the_upstream_follows_the_answer(dns_server: DnsServer) -> None:
    """Addresses join and leave; a target that stays keeps its state (ejection); a failed
    resolution keeps the last addresses; the gauges follow."""
    target = f"dns://127.0.0.1:{dns_server.port}/models.test:8500"
    settings = load_settings(None, upstreams={"default": {"targets": [target, "127.0.0.9:8500"], "resolve_s": 0.1}})
    metrics = Metrics()

    def gauge(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"upstream": "default", **labels})

    async def scenario() -> None:
        upstream = Upstream("default", settings.upstreams["default"], settings, metrics)
        assert [t.address for t in upstream.targets] == ["127.0.0.9:8500"]
        dns_server.set("models.test", ["127.0.0.2", "127.0.0.3"])
        await upstream.resolve()
        assert [t.address for t in upstream.targets] == ["127.0.0.9:8500", "127.0.0.2:8500", "127.0.0.3:8500"]
        assert gauge("tensorgate_gateway_upstream_targets") == 3
        kept = upstream.targets[2]
        kept.ejected = True
        dns_server.set("models.test", ["127.0.0.3", "127.0.0.4"])
        await upstream.resolve()
        assert [t.address for t in upstream.targets] == ["127.0.0.9:8500", "127.0.0.3:8500", "127.0.0.4:8500"]
        assert upstream.targets[1] is kept and kept.ejected
        assert gauge("tensorgate_gateway_upstream_target_healthy", target="127.0.0.2:8500") is None
        assert gauge("tensorgate_gateway_upstream_target_healthy", target="127.0.0.4:8500") == 1
        dns_server.close()  # no answer now: the addresses stay
        await upstream.resolve()
        assert [t.address for t in upstream.targets] == ["127.0.0.9:8500", "127.0.0.3:8500", "127.0.0.4:8500"]
        assert gauge("tensorgate_gateway_upstream_resolutions_total", result="ok") == 2
        assert gauge("tensorgate_gateway_upstream_resolutions_total", result="error") == 1
        await upstream.close()

    asyncio.run(scenario())
