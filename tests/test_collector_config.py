"""Validation of the OpenTelemetry Collector configurations under ``collector/``.

No Collector binary runs here, so these tests are the check (collector/README.md gives
users the ``otelcol-contrib validate`` command). The component list and config keys of
otelcol-contrib 0.159.0 are a copy of ``../shared/otelcol-contrib`` in
``tests/data/otelcol-contrib``; ``collector_config_checker`` applies them.

Every YAML file under collector/ (Prometheus rules and Grafana files aside) states the
command that runs it in a comment, ``otelcol-contrib --config A [--config B ...]``; the
tests merge the files of that command the way the Collector does and check the result.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from collector_config_checker import (
    CheckResult,
    ComponentCatalog,
    check_config,
    component_ids,
    load_yaml,
    merge_configs,
)
from modeltrace import semconv

REPO = Path(__file__).resolve().parents[1]
COLLECTOR = REPO / "collector"
CATALOG_DIR = Path(__file__).resolve().parent / "data" / "otelcol-contrib"
NOT_COLLECTOR_CONFIGS = ("prometheus", "grafana")

# Deprecated type aliases we accept ("kind:alias"). Empty on purpose: the configs target
# the canonical v0.159.0 names and mention the old names in comments for older Collectors.
ALLOWED_DEPRECATED_ALIASES: frozenset[str] = frozenset()
# (receiver, signal) allowed to feed more than one pipeline. Empty: see the shared-receiver
# rule in collector_config_checker._check_graph.
ALLOWED_SHARED_RECEIVERS: frozenset[tuple[str, str]] = frozenset()

# Base components an overlay deliberately leaves out of every pipeline (the Collector does
# not start them). Pinned so that a component dropping out by mistake is noticed.
EXPECTED_INERT: dict[str, set[tuple[str, str]]] = {
    "otelcol-sampling-tier.yaml": {
        ("exporters", "otlp_http/modeltrace"),
        ("processors", "attributes/hash-sensitive-features"),
        ("processors", "redaction/personal-values"),
    },
    "backends/datadog.yaml": {
        ("connectors", "span_metrics"),
        ("exporters", "otlp_grpc/traces"),
        ("exporters", "prometheus_remote_write/metrics"),
    },
    "backends/datadog-agent.yaml": {
        ("exporters", "otlp_grpc/traces"),
        ("exporters", "prometheus_remote_write/metrics"),
    },
}

_RUN_COMMAND = re.compile(r"otelcol-contrib((?:\s+--config\s+\S+)+)")


@pytest.fixture(scope="module")
def catalog() -> ComponentCatalog:
    return ComponentCatalog.load(CATALOG_DIR)


def collector_config_files() -> list[Path]:
    files = sorted(
        p
        for p in COLLECTOR.rglob("*")
        if p.suffix in (".yaml", ".yml")
        and p.relative_to(COLLECTOR).parts[0] not in NOT_COLLECTOR_CONFIGS
    )
    assert files, "no Collector configs under collector/"
    return files


def run_command(path: Path) -> list[Path]:
    """The files of the ``otelcol-contrib --config ...`` command written in ``path``."""
    text = re.sub(r"\\\n#\s*", " ", path.read_text())
    for match in _RUN_COMMAND.finditer(text):
        files = [REPO / f for f in re.findall(r"--config\s+(\S+)", match.group(1))]
        if files[-1] == path:
            return files
    raise AssertionError(f"{path}: no 'otelcol-contrib --config ... --config {path.name}' line")


def check_file(path: Path, catalog: ComponentCatalog) -> CheckResult:
    """Merge the file's run command and check it; an overlay's own components must be used."""
    files = run_command(path)
    for file in files:
        assert file.is_file(), f"{path}: run command names missing file {file}"
    configs = [load_yaml(f) for f in files]
    return check_config(
        merge_configs(configs),
        catalog,
        must_be_used=component_ids(configs[-1]),
        allowed_aliases=ALLOWED_DEPRECATED_ALIASES,
        allowed_shared_receivers=ALLOWED_SHARED_RECEIVERS,
    )


def check(config: dict[str, Any], catalog: ComponentCatalog) -> list[str]:
    return check_config(config, catalog).problems


def _rel(path: Path) -> str:
    return str(path.relative_to(COLLECTOR))


# --- the real files ------------------------------------------------------------------
@pytest.mark.parametrize("path", collector_config_files(), ids=_rel)
def test_collector_config_is_valid(path: Path, catalog: ComponentCatalog) -> None:
    result = check_file(path, catalog)
    assert result.problems == []
    assert result.unused == EXPECTED_INERT.get(_rel(path), set())


def test_standalone_configs_are_the_two_tiers_and_the_gateway() -> None:
    standalone = {_rel(p) for p in collector_config_files() if len(run_command(p)) == 1}
    assert standalone == {"otelcol-config.yaml", "otelcol-loadbalancing.yaml"}
    overlays = {_rel(p): run_command(p)[0] for p in collector_config_files()}
    for name, base in overlays.items():
        if name not in standalone:
            assert base == COLLECTOR / "otelcol-config.yaml", name


def test_keys_are_checked_deep_inside_components(catalog: ComponentCatalog) -> None:
    """Guards against a checker that passes because it looked at nothing."""
    gateway = check_file(COLLECTOR / "otelcol-config.yaml", catalog).verified_paths
    assert {
        "receivers.otlp.protocols.http.max_request_body_size",
        "exporters.otlp_http/modeltrace.retry_on_failure.max_elapsed_time",
        "exporters.otlp_http/modeltrace.sending_queue.num_consumers",
        "exporters.otlp_grpc/traces.tls.insecure",
        "exporters.prometheus_remote_write/metrics.remote_write_queue.queue_size",
        "processors.tail_sampling.decision_cache.sampled_cache_size",
        "processors.tail_sampling.policies[2].ottl_condition.span",
        "processors.attributes/hash-sensitive-features.actions[0].pattern",
        "connectors.span_metrics.histogram.explicit.buckets",
        "connectors.span_metrics.dimensions[0].name",
    } <= gateway
    router = check_file(COLLECTOR / "otelcol-loadbalancing.yaml", catalog).verified_paths
    assert {
        "exporters.load_balancing/aggregators.protocol.otlp.headers",
        "exporters.load_balancing/aggregators.protocol.otlp.retry_on_failure.enabled",
        "exporters.load_balancing/aggregators.resolver.dns.interval",
    } <= router
    datadog = check_file(COLLECTOR / "backends" / "datadog.yaml", catalog).verified_paths
    assert "exporters.datadog.metrics.histograms.send_aggregation_metrics" in datadog


# --- what the configs must do ----------------------------------------------------------
def _pipeline(config: dict[str, Any], name: str) -> dict[str, list[str]]:
    return config["service"]["pipelines"][name]


def test_gateway_fans_out_the_unsampled_stream() -> None:
    config = load_yaml(COLLECTOR / "otelcol-config.yaml")
    intake = _pipeline(config, "traces/intake")
    # The aggregator and span metrics get every span; tail sampling only the copy.
    assert set(intake["exporters"]) == {"otlp_http/modeltrace", "span_metrics", "forward/sampling"}
    assert "tail_sampling" not in intake["processors"]
    assert _pipeline(config, "traces/sampled")["processors"] == [
        "memory_limiter",
        "tail_sampling",
        "batch",
    ]
    dims = [d["name"] for d in config["connectors"]["span_metrics"]["dimensions"]]
    assert dims == [semconv.MODEL_NAME, semconv.MODEL_VERSION]
    aggregator = config["exporters"]["otlp_http/modeltrace"]
    assert aggregator["headers"]["authorization"].startswith("Bearer ")


def test_tail_sampling_keeps_errors_slow_and_exemplar_traces() -> None:
    config = load_yaml(COLLECTOR / "otelcol-config.yaml")
    policies = {p["type"]: p for p in config["processors"]["tail_sampling"]["policies"]}
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert policies["latency"]["latency"]["threshold_ms"] == 500
    condition = policies["ottl_condition"]["ottl_condition"]["span"]
    assert condition == [f'attributes["{semconv.SAMPLE_INDICES}"] != nil']
    assert 0 < policies["probabilistic"]["probabilistic"]["sampling_percentage"] <= 10


def test_scrubbing_hashes_sensitive_feature_names_only() -> None:
    config = load_yaml(COLLECTOR / "otelcol-config.yaml")
    (action,) = config["processors"]["attributes/hash-sensitive-features"]["actions"]
    assert action["action"] == "hash"
    pattern = re.compile(action["pattern"])
    prefix = semconv.FEATURE_PREFIX
    for sensitive in ("email", "customer_email", "phone", "ip_address", "last_name"):
        assert pattern.search(prefix + sensitive), sensitive
    for harmless in ("tenure", "monthly_charges", "plan", "shipping_zone_count"):
        assert not pattern.search(prefix + harmless), harmless
    assert not pattern.search("http.request.header.email")
    masks = [
        re.compile(v) for v in config["processors"]["redaction/personal-values"]["blocked_values"]
    ]
    assert any(m.search("contact: jane.doe@example.com") for m in masks)
    assert any(m.search("4111111111111111") for m in masks)
    assert not any(m.search("churn probability 0.83 for plan gold") for m in masks)


def test_router_routes_by_model_to_aggregators_and_by_trace_to_sampling_tier() -> None:
    config = load_yaml(COLLECTOR / "otelcol-loadbalancing.yaml")
    to_aggregators = config["exporters"]["load_balancing/aggregators"]
    assert to_aggregators["routing_key"] == "attributes"
    assert to_aggregators["routing_attributes"] == [semconv.MODEL_NAME]
    assert set(to_aggregators["protocol"]) == {"otlp"}  # OTLP/gRPC, the only protocol
    assert config["exporters"]["load_balancing/sampling-tier"]["routing_key"] == "traceID"
    conditions = config["processors"]["filter/ml-spans-only"]["trace_conditions"]
    assert conditions == [f'span.attributes["{semconv.MODEL_NAME}"] == nil']
    assert _pipeline(config, "traces/aggregators")["exporters"] == ["load_balancing/aggregators"]


def test_shared_settings_are_identical_in_both_tiers() -> None:
    gateway = load_yaml(COLLECTOR / "otelcol-config.yaml")
    router = load_yaml(COLLECTOR / "otelcol-loadbalancing.yaml")
    for processor in (
        "memory_limiter",
        "batch",
        "attributes/hash-sensitive-features",
        "redaction/personal-values",
    ):
        assert router["processors"][processor] == gateway["processors"][processor], processor
    assert router["receivers"] == gateway["receivers"]


def test_merge_replaces_lists_and_merges_maps() -> None:
    base = {"a": {"x": 1, "l": [1, 2]}, "b": 2}
    merged = merge_configs([base, {"a": {"l": [3], "y": 4}}])
    assert merged == {"a": {"x": 1, "l": [3], "y": 4}, "b": 2}
    assert base == {"a": {"x": 1, "l": [1, 2]}, "b": 2}


def test_readme_gives_the_validate_command() -> None:
    readme = (COLLECTOR / "README.md").read_text()
    assert "otelcol-contrib validate --config" in readme
    for path in collector_config_files():
        assert _rel(path) in readme, f"collector/README.md does not describe {_rel(path)}"


# --- the checker catches broken copies ------------------------------------------------------
@pytest.fixture
def gateway() -> dict[str, Any]:
    return load_yaml(COLLECTOR / "otelcol-config.yaml")


def test_broken_file_copy_fails(tmp_path: Path, catalog: ComponentCatalog) -> None:
    text = (COLLECTOR / "otelcol-config.yaml").read_text()
    broken = text.replace("send_batch_max_size: 16384", "send_batch_max_sise: 16384", 1)
    broken = broken.replace("[otlp_grpc/traces]", "[otlp_grpc/trace]", 1)
    assert broken.count("send_batch_max_sise") == 1 and "[otlp_grpc/trace]" in broken
    path = tmp_path / "otelcol-config.yaml"
    path.write_text(broken)
    problems = check(load_yaml(path), catalog)
    assert "processors.batch.send_batch_max_sise: unknown key" in "\n".join(problems)
    assert any("'otlp_grpc/trace' is not defined under exporters" in p for p in problems)
    assert any("otlp_grpc/traces: defined but not used" in p for p in problems)


def test_unknown_keys_at_every_depth(gateway: dict[str, Any], catalog: ComponentCatalog) -> None:
    config = copy.deepcopy(gateway)
    config["processors"]["batch"]["send_batch_sise"] = 10
    config["exporters"]["otlp_http/modeltrace"]["retry_on_failure"]["max_elapsed"] = "1m"
    config["exporters"]["otlp_grpc/traces"]["sending_queue"]["batch"] = {"flush_timout": "1s"}
    config["receivers"]["otlp"]["protocols"]["http"]["endpont"] = "0.0.0.0:4318"
    config["processors"]["tail_sampling"]["policies"][1]["latency"]["threshold"] = 5
    config["connectors"]["span_metrics"]["dimensions"].append({"nme": "x"})
    problems = "\n".join(check(config, catalog))
    for path in (
        "processors.batch.send_batch_sise",
        "exporters.otlp_http/modeltrace.retry_on_failure.max_elapsed",
        "exporters.otlp_grpc/traces.sending_queue.batch.flush_timout",
        "receivers.otlp.protocols.http.endpont",
        "processors.tail_sampling.policies[1].latency.threshold",
        "connectors.span_metrics.dimensions[2].nme",
    ):
        assert f"{path}: unknown key" in problems, path


def test_enumerated_values(gateway: dict[str, Any], catalog: ComponentCatalog) -> None:
    config = copy.deepcopy(gateway)
    config["exporters"]["prometheus_remote_write/metrics"]["translation_strategy"] = "Underscore"
    config["processors"]["tail_sampling"]["policies"][0]["type"] = "latency"
    problems = "\n".join(check(config, catalog))
    assert "translation_strategy: 'Underscore' is not one of" in problems
    assert "policies[0]: type 'latency' but settings block(s) ['status_code']" in problems


def test_unknown_type_and_deprecated_alias(
    gateway: dict[str, Any], catalog: ComponentCatalog
) -> None:
    config = copy.deepcopy(gateway)
    config["exporters"]["otlphttpx/extra"] = {}
    config["exporters"]["otlp/old"] = {"endpoint": "x:4317"}
    _pipeline(config, "traces/sampled")["exporters"] += ["otlphttpx/extra", "otlp/old"]
    problems = check(config, catalog)
    assert (
        "exporters.otlphttpx/extra: unknown exporter type 'otlphttpx' in otelcol-contrib 0.159.0"
        in problems
    )
    assert (
        "exporters.otlp/old: 'otlp' is a deprecated alias in otelcol-contrib 0.159.0; "
        "use 'otlp_grpc'"
    ) in problems
    allowed = check_config(config, catalog, allowed_aliases=frozenset({"exporters:otlp"}))
    assert not any("deprecated alias" in p for p in allowed.problems)


def test_undefined_reference_and_unused_component(
    gateway: dict[str, Any], catalog: ComponentCatalog
) -> None:
    config = copy.deepcopy(gateway)
    _pipeline(config, "metrics")["processors"].append("batch/missing")
    _pipeline(config, "metrics")["receivers"].append("prometheus")
    config["processors"]["batch/unused"] = {}
    config["service"]["extensions"].append("zpages")
    problems = check(config, catalog)
    assert (
        "service.pipelines.metrics.processors: 'batch/missing' is not defined under processors"
        in problems
    )
    assert (
        "service.pipelines.metrics.receivers: 'prometheus' is not defined under receivers "
        "or connectors"
    ) in problems
    assert "processors.batch/unused: defined but not used in any pipeline" in problems
    assert "service.extensions: 'zpages' is not defined" in problems


def test_processor_order_and_batch(gateway: dict[str, Any], catalog: ComponentCatalog) -> None:
    config = copy.deepcopy(gateway)
    _pipeline(config, "traces/sampled")["processors"] = ["tail_sampling", "memory_limiter", "batch"]
    _pipeline(config, "metrics")["processors"] = ["memory_limiter"]
    problems = check(config, catalog)
    assert "service.pipelines.traces/sampled.processors: memory_limiter must come first" in problems
    assert "service.pipelines.metrics.processors: no batch processor" in problems


def test_shared_receiver_needs_intent(gateway: dict[str, Any], catalog: ComponentCatalog) -> None:
    config = copy.deepcopy(gateway)
    config["service"]["pipelines"]["traces/copy"] = {
        "receivers": ["otlp"],
        "processors": ["memory_limiter", "batch"],
        "exporters": ["otlp_grpc/traces"],
    }
    problems = check(config, catalog)
    assert any(p.startswith("receivers.otlp: feeds 2 traces pipelines") for p in problems)
    intended = check_config(
        config, catalog, allowed_shared_receivers=frozenset({("otlp", "traces")})
    )
    assert intended.problems == []
    # The otlp receiver in a traces and a metrics pipeline is not sharing.
    assert check(gateway, catalog) == []


def test_connector_wiring(gateway: dict[str, Any], catalog: ComponentCatalog) -> None:
    half_wired = copy.deepcopy(gateway)
    del half_wired["service"]["pipelines"]["traces/sampled"]
    problems = check(half_wired, catalog)
    assert (
        "connectors.forward/sampling: used as exporter but no pipeline receives from it" in problems
    )

    wrong_signal = copy.deepcopy(gateway)
    wrong_signal["service"]["pipelines"]["traces/sampled"]["receivers"].append("span_metrics")
    problems = check(wrong_signal, catalog)
    assert "connectors.span_metrics: span_metrics cannot connect traces to traces" in problems
