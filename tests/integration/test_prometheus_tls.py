"""A real Prometheus behind TLS (a self-signed certificate for 127.0.0.1): `insecureSkipVerify`, the CA
bundle and proxy settings from the environment, which each source reads once."""

from __future__ import annotations

import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hack import procs, promlab

from robustness_gate.metrics.prometheus import PrometheusSource
from robustness_gate.metrics.source import MetricsError, Window

QUERY = 'label_replace(vector(1), "side", "canary", "", "")'


class TlsPrometheus:
    def __init__(self, workdir: Path) -> None:
        self.cert, key = workdir / "cert.pem", workdir / "key.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(self.cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        (workdir / "web.yml").write_text(f"tls_server_config:\n  cert_file: {self.cert}\n  key_file: {key}\n")
        (workdir / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
        self.port = procs.free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                *procs.die_with_parent_prefix(),
                promlab.resolve_prometheus_bin(),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--web.config.file={workdir / 'web.yml'}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        unverified = ssl.create_default_context()
        unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2, context=unverified) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"Prometheus with TLS did not start; see {workdir / 'prometheus.log'}", pytrace=False)
            time.sleep(0.2)

    def stop(self) -> None:
        procs.terminate(self.proc)
        self.log.close()


@pytest.fixture(scope="module")
def tls_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPrometheus]:
    server = TlsPrometheus(tmp_path_factory.mktemp("tls-prometheus"))
    yield server
    server.stop()


def query(source: PrometheusSource) -> list[float]:
    now = time.time()
    try:
        [(labels, points)] = source.range_query(QUERY, Window.between(now - 20, now, 10), "the probe")
    finally:
        source.close()
    assert labels.get("side") == "canary"
    return [value for _, value in points]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


def test_insecure_skip_verify_accepts_a_self_signed_certificate(tls_prometheus: TlsPrometheus) -> None:
    assert query(PrometheusSource(tls_prometheus.url, verify_tls=False)) == [1.0, 1.0]


def test_an_unknown_certificate_is_refused_with_the_reason(tls_prometheus: TlsPrometheus) -> None:
    pattern = r"TLS with Prometheus .* CERTIFICATE_VERIFY_FAILED.*insecureSkipVerify"
    with pytest.raises(MetricsError, match=pattern) as caught:
        query(PrometheusSource(tls_prometheus.url))
    assert caught.value.kind == "unreachable"


def test_the_ca_bundle_from_the_environment_is_trusted(
    tls_prometheus: TlsPrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_prometheus.cert))
    assert query(PrometheusSource(tls_prometheus.url)) == [1.0, 1.0]


def test_proxy_settings_from_the_environment_are_followed(
    tls_prometheus: TlsPrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy on a port nobody listens on: used, the query fails; bypassed by NO_PROXY, it succeeds.
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{procs.free_port()}")
    with pytest.raises(MetricsError, match=r"cannot reach Prometheus .*Unable to connect to proxy") as caught:
        query(PrometheusSource(tls_prometheus.url, verify_tls=False))
    assert caught.value.kind == "unreachable"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert query(PrometheusSource(tls_prometheus.url, verify_tls=False)) == [1.0, 1.0]
