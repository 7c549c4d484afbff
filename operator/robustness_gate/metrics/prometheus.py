"""Prometheus as a MetricSource, through prometheus-api-client.

Each look is one step of a range query. Prometheus holds the data: the CLI and a restarted operator
ask for every look since the analysis started; a running operator keeps one source per gate and
asks only for the looks it has not cached yet (cache.py). Faults become MetricsError with
Prometheus' own message; they never turn into data.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from robustness_gate.api import MetricSpec, PrometheusSpec
from robustness_gate.durations import format_duration, parse_duration
from robustness_gate.metrics.assembly import assemble
from robustness_gate.metrics.queries import Query, QueryMemo, combine, combine_tagged
from robustness_gate.metrics.source import (
    PER_METRIC_KINDS,
    ErrorKind,
    Fetched,
    MetricsError,
    RawSeries,
    Window,
    fetch_each,
    split_parts,
    split_tagged,
)
from robustness_gate.metrics.templates import Sides
from robustness_gate.series import MetricData
from robustness_gate.telemetry_sink import NULL_TELEMETRY, TelemetrySink


@dataclass(frozen=True)
class Credentials:
    """Resolved from Secret references by the caller; never logged or reported."""

    bearer_token: str | None = None
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return "Credentials(<redacted>)"


@dataclass
class PrometheusSource:
    address: str
    timeout_seconds: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)
    credentials: Credentials = field(default_factory=Credentials)
    verify_tls: bool = True
    telemetry: TelemetrySink = NULL_TELEMETRY  # counts every query sent
    queries_run: int = 0
    _client: PrometheusConnect | None = field(default=None, init=False, repr=False)
    _last_response: requests.Response | None = field(default=None, init=False, repr=False)
    _queries: QueryMemo = field(default_factory=QueryMemo, init=False, repr=False)
    # Combined queries Prometheus refused (or whose tags it dropped): their metrics are asked one at a time.
    _uncombinable: set[str] = field(default_factory=set, init=False, repr=False)

    def _connect(self) -> PrometheusConnect:
        if self._client is None:
            session = requests.Session()
            session.hooks["response"].append(self._remember)
            # requests reads proxies and the CA bundle from the environment again on every request, scanning
            # every variable (a pod gets several per Service in its namespace). Read them once, for this address:
            # HTTP(S)_PROXY and NO_PROXY, then REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, as requests would.
            session.trust_env = False
            session.proxies = requests.utils.get_environ_proxies(self.address)
            # Set here because PrometheusConnect applies disable_ssl only to a session it makes itself.
            session.verify = _environment_ca_bundle() or True if self.verify_tls else False
            headers = dict(self.headers)
            if self.credentials.bearer_token:
                headers["Authorization"] = f"Bearer {self.credentials.bearer_token}"
            auth = None
            if self.credentials.username is not None:
                auth = (self.credentials.username, self.credentials.password or "")
            # One quick retry on a gateway hiccup; the next look retries anyway.
            # Read errors are not retried, so a slow Prometheus costs one timeout, not two.
            retry = Retry(
                total=1, read=False, backoff_factor=0.2, status_forcelist=[502, 503, 504], raise_on_status=False
            )
            self._client = PrometheusConnect(
                url=self.address.rstrip("/"),
                headers=headers or None,
                disable_ssl=not self.verify_tls,
                retry=retry,
                auth=auth,
                session=session,
                timeout=self.timeout_seconds,
            )
        return self._client

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        self._last_response = response
        return response

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def fetch(self, metric: MetricSpec, sides: Sides, window: Window) -> MetricData:
        """One range query for all parts of the metric.

        When Prometheus refuses the combined query, or its answer lost the part labels, the parts are
        sent one by one: a broken part is then named with Prometheus' own message, and parts that only
        fail combined (a template that returns a scalar cannot be tagged) still give their answers.
        """
        queries = self._queries.queries(metric, sides, window.step)
        raw: dict[Query, RawSeries] | None = None
        if len(queries) > 1:
            where = f"metric {metric.name} ({', '.join(dict.fromkeys(query.role for query in queries))})"
            try:
                raw = split_parts(queries, self.range_query(combine(queries), window, where))
            except MetricsError as error:
                if error.kind != "promql":
                    raise
        if raw is None:
            raw = {q: self.range_query(q.promql, window, f"metric {metric.name} ({q.role})") for q in queries}
        return assemble(metric, sides, window, raw)

    def fetch_many(self, metrics: Sequence[MetricSpec], sides: Sides, window: Window) -> Fetched:
        """One range query for all parts of all the metrics (each HTTP request costs the operator more CPU
        than the few series it brings). When Prometheus refuses it, or its answer lost the tags, each metric
        is asked on its own, as `fetch` does, and that combination is not sent again."""
        if len(metrics) > 1 and window.looks > 0:
            tagged = [
                (f"{index}/{query.part}", query)
                for index, metric in enumerate(metrics)
                for query in self._queries.queries(metric, sides, window.step)
            ]
            promql = combine_tagged(tagged)
            by_tag: dict[str, RawSeries] | None = None
            if promql not in self._uncombinable:
                names = ", ".join(metric.name for metric in metrics)
                try:
                    by_tag = split_tagged(
                        [tag for tag, _ in tagged], self.range_query(promql, window, f"metrics {names}")
                    )
                except MetricsError as error:
                    if error.kind != "promql":
                        raise
                if by_tag is None:
                    self._uncombinable.add(promql)
            if by_tag is not None:
                fetched: Fetched = {}
                for index, metric in enumerate(metrics):
                    raw = {query: by_tag[tag] for tag, query in tagged if tag.startswith(f"{index}/")}
                    fetched[metric.name] = _assembled(metric, sides, window, raw)
                return fetched
        return fetch_each(self, metrics, sides, window)

    def range_query(self, promql: str, window: Window, where: str) -> RawSeries:
        if window.looks <= 0:
            return []
        client = self._connect()
        self.queries_run += 1
        self.telemetry.prometheus_query()
        self._last_response = None
        try:
            result = client.custom_query_range(
                promql,
                start_time=datetime.fromtimestamp(window.first, UTC),
                end_time=datetime.fromtimestamp(window.last, UTC),
                step=format_duration(window.step),
                params={"timeout": format_duration(self.timeout_seconds)},
            )
        except requests.exceptions.Timeout:
            raise self._timeout_error(where) from None
        except requests.exceptions.SSLError as error:
            raise MetricsError(
                f"TLS with Prometheus at {self.address} failed: {_connection_problem(error)}; trust its CA "
                "(REQUESTS_CA_BUNDLE in the operator's environment) or set spec.prometheus.insecureSkipVerify",
                ErrorKind.UNREACHABLE,
            ) from None
        except requests.exceptions.ConnectionError as error:
            if "timed out" in str(error):
                raise self._timeout_error(where) from None
            raise MetricsError(
                f"cannot reach Prometheus at {self.address}: {_connection_problem(error)}", ErrorKind.UNREACHABLE
            ) from None
        except PrometheusApiClientException:
            raise self._http_error(where, promql) from None
        except (ValueError, KeyError, TypeError) as error:  # JSON that is not a Prometheus answer
            raise MetricsError(
                f"Prometheus at {self.address} answered {where} with malformed JSON: {_short(error)}",
                ErrorKind.MALFORMED,
            ) from None
        return _parse_matrix(result, where)

    def _timeout_error(self, where: str) -> MetricsError:
        within = format_duration(self.timeout_seconds)
        return MetricsError(f"Prometheus at {self.address} did not answer {where} within {within}", ErrorKind.TIMEOUT)

    def _http_error(self, where: str, promql: str) -> MetricsError:
        response = self._last_response
        status = response.status_code if response is not None else 0
        detail = ""
        if response is not None:
            try:
                body = response.json()
                detail = str(body.get("error") or body)
            except ValueError:
                detail = response.text[:200]
        if status == 400 or (response is not None and '"bad_data"' in response.text):
            return MetricsError(f"PromQL error in {where}: {detail} (query: {promql})", ErrorKind.PROMQL)
        if status in (401, 403):
            return MetricsError(f"Prometheus refused {where} with HTTP {status}: check the credentials", ErrorKind.HTTP)
        return MetricsError(f"Prometheus answered {where} with HTTP {status}: {detail}", ErrorKind.HTTP)


def _assembled(
    metric: MetricSpec, sides: Sides, window: Window, raw: dict[Query, RawSeries]
) -> MetricData | MetricsError:
    try:
        return assemble(metric, sides, window, raw)
    except MetricsError as error:
        if error.kind not in PER_METRIC_KINDS:
            raise
        return error


def _parse_matrix(result: Any, where: str) -> RawSeries:
    if not isinstance(result, list):
        raise MetricsError(
            f"{where}: expected a matrix from Prometheus, got {type(result).__name__}", ErrorKind.MALFORMED
        )
    series: RawSeries = []
    for item in result:
        if not isinstance(item, dict) or "values" not in item:
            raise MetricsError(
                f"{where}: unexpected series in the answer: {json.dumps(item)[:120]}", ErrorKind.MALFORMED
            )
        labels = {str(k): str(v) for k, v in dict(item.get("metric") or {}).items()}
        samples = []
        for point in item["values"]:
            try:
                timestamp, text = float(point[0]), str(point[1])
                samples.append((timestamp, float(text)))
            except (TypeError, ValueError, IndexError):
                raise MetricsError(f"{where}: unreadable sample {point!r}", ErrorKind.MALFORMED) from None
        series.append((labels, [(t, v) for t, v in samples if not math.isnan(v)]))
    return series


def _environment_ca_bundle() -> str | None:
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def _connection_problem(error: requests.exceptions.ConnectionError) -> str:
    """The cause, without the request URL (and its long query) that urllib3's retry error puts first."""
    cause: object = error.args[0] if error.args else error
    cause = getattr(cause, "reason", None) or cause
    return _short(cause if isinstance(cause, BaseException) else error)


def _short(error: BaseException) -> str:
    text = str(error)
    return text if len(text) <= 200 else text[:200] + "..."


def prometheus_source(spec: PrometheusSpec, credentials: Credentials) -> PrometheusSource:
    """The source for a gate's spec.prometheus (the one factory the operator and `analyze` use)."""
    return PrometheusSource(
        address=spec.address,
        timeout_seconds=parse_duration(spec.timeout),
        headers=dict(spec.headers),
        credentials=credentials,
        verify_tls=not spec.insecure_skip_verify,
    )
