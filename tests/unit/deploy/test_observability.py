"""Prometheus and Grafana files use only metrics that streams/worker/metrics.py exposes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from streams.worker import metrics
from streams.settings import WebSettings

from .yaml_text import COMPOSE, DEPLOY, block, compose_services, scalars

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "vitrine.json"
PROMETHEUS = DEPLOY / "prometheus"
_METRIC = re.compile(r"\bvitrine_[a-z][a-z0-9_]*\b")
# Labels Prometheus adds at scrape time, and the histogram bucket bound.
_TARGET_LABELS = {"instance", "job", "service", "namespace", "pod"}

# prometheus_client exposition suffixes per metric type.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def _families() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Family name -> (type, label names) of every metric in streams.worker.metrics."""
    out = {}
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            (desc,) = obj.describe()
            out[desc.name] = (desc.type, tuple(obj._labelnames))
    return out


FAMILIES = _families()
EXPOSED = {
    family + suffix: (family, labels + (("le",) if suffix == "_bucket" else ()))
    for family, (type_, labels) in FAMILIES.items()
    for suffix in _SUFFIXES[type_]
}


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def _dashboard_queries() -> list[str]:
    dash = _dashboard()
    queries = [v for k, v in _walk(dash["panels"]) if k == "expr"]
    queries += [
        v["query"] if isinstance(v["query"], str) else v["query"]["query"]
        for v in dash["templating"]["list"]
        if v["type"] == "query"
    ]
    return queries


def _rule_queries() -> list[str]:
    """Every ``expr`` of alerts.yml, one-line or block scalar (``expr: |``)."""
    lines = (PROMETHEUS / "alerts.yml").read_text().splitlines()
    exprs = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if not m:
            continue
        if m.group(2) not in ("|", ">"):
            exprs.append(m.group(2))
            continue
        body = []
        for nxt in lines[i + 1 :]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= len(m.group(1)):
                break
            body.append(nxt.strip())
        exprs.append(" ".join(body).strip())
    assert exprs, "no expr in alerts.yml"
    return exprs


def _check_query(query: str) -> None:
    for name in _METRIC.findall(query):
        assert name in EXPOSED, f"{name} is not exposed by streams/worker/metrics.py (in {query!r})"
    # Label matchers must name labels the metric has.
    for name, matchers in re.findall(r"\b(vitrine_\w+)\{([^}]*)\}", query):
        allowed = set(EXPOSED[name][1]) | _TARGET_LABELS
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
            assert label in allowed, f"{name} has no label {label!r} (in {query!r})"
    # `by (...)` directly around rate(metric...) or metric must group by its labels.
    for labels, name in re.findall(
        r"by\s*\(([^)]*)\)\s*\(\s*(?:(?:rate|increase|irate)\(\s*)?(vitrine_\w+)", query
    ):
        allowed = set(EXPOSED[name][1]) | _TARGET_LABELS
        for label in (x.strip() for x in labels.split(",") if x.strip()):
            assert label in allowed, f"{name} has no label {label!r} (in {query!r})"


def test_metrics_module_is_read() -> None:
    assert "vitrine_events_in_total" in EXPOSED
    assert "vitrine_batch_size_bucket" in EXPOSED
    assert "vitrine_execution_provider_info" in EXPOSED
    assert "vitrine_redis_up" in EXPOSED


@pytest.mark.parametrize("query", _dashboard_queries())
def test_dashboard_queries_use_exposed_metrics(query: str) -> None:
    _check_query(query)


@pytest.mark.parametrize("query", _rule_queries())
def test_alert_rules_use_exposed_metrics(query: str) -> None:
    _check_query(query)


def test_every_vitrine_metric_name_under_deploy_exists() -> None:
    for path in sorted(DEPLOY.rglob("*")):
        if path.suffix not in {".json", ".yml", ".yaml", ".md"}:
            continue
        unknown = set(_METRIC.findall(path.read_text())) - set(EXPOSED)
        assert not unknown, f"{path.relative_to(DEPLOY)}: {sorted(unknown)}"


def test_dashboard_covers_every_metric_family() -> None:
    used = {EXPOSED[n][0] for q in _dashboard_queries() for n in _METRIC.findall(q)}
    assert set(FAMILIES) - used == set()


@pytest.mark.parametrize(
    "histogram",
    ["vitrine_decode_seconds", "vitrine_inference_seconds", "vitrine_end_to_end_seconds"],
)
def test_latency_panels_show_p50_p95_p99(histogram: str) -> None:
    queries = [q for q in _dashboard_queries() if f"{histogram}_bucket" in q]
    quantiles = {m for q in queries for m in re.findall(r"histogram_quantile\(([\d.]+)", q)}
    assert {"0.5", "0.95", "0.99"} <= quantiles


def test_dashboard_is_well_formed() -> None:
    dash = _dashboard()
    assert dash["uid"]
    assert dash["title"]
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
    variables = {v["name"] for v in dash["templating"]["list"]}
    for key, value in _walk(panels):
        if key == "datasource" and isinstance(value, dict):
            assert value["type"] == "prometheus"
            uid = value["uid"]
            assert uid.startswith("${"), uid
            assert uid[2:-1] in variables, uid


def test_grafana_provisioning_points_at_compose_prometheus_and_dashboards() -> None:
    services = compose_services(COMPOSE.read_text())
    datasource = (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    (url,) = scalars(datasource, "url")
    m = re.fullmatch(r"http://([\w-]+):(\d+)", url)
    assert m, url
    host, port = m.groups()
    assert host in services
    assert f":{port}" in "\n".join(block(services[host], "ports"))
    provider = (DEPLOY / "grafana/provisioning/dashboards/vitrine.yml").read_text()
    (path,) = scalars(provider, "path")
    assert f"./grafana/dashboards:{path}" in services["grafana"]
    assert DASHBOARD.parent.is_dir()


def test_prometheus_scrapes_the_workers_on_the_web_port() -> None:
    text = (PROMETHEUS / "prometheus.yml").read_text()
    port = WebSettings.model_fields["port"].default
    assert scalars(text, "port") == [str(port)]
    assert scalars(text, "metrics_path") == ["/metrics"]
    services = compose_services(COMPOSE.read_text())
    (names,) = scalars(text, "names")
    for service in re.findall(r"[\w-]+", names):
        assert service in services, service
    # compose mounts deploy/prometheus at /etc/prometheus.
    rule_files = re.findall(r"^\s+-\s+/etc/prometheus/(\S+)", text, re.M)
    assert rule_files
    for rule_file in rule_files:
        assert (PROMETHEUS / rule_file).is_file(), rule_file
