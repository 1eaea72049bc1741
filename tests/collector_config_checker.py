"""Static checks of OpenTelemetry Collector configurations against otelcol-contrib data.

No Collector binary can run in this repository's test environment, so this module is
the check of ``collector/*.yaml``: it reads the component list (``components.yaml``) and
the config keys (``fields.yaml``) of the otelcol-contrib release the configs target, and
reports, as plain messages:

- component types unknown for their kind, or deprecated aliases not allowed;
- config keys unknown to a component, recursively wherever ``fields.yaml`` describes
  the nested blocks (shared blocks such as ``sending_queue`` or ``tls`` included), plus
  values outside a documented enumeration;
- pipelines that reference undefined components, defined components that no pipeline
  uses, connectors not wired as exporter of one pipeline and receiver of another with a
  signal pair the connector supports;
- a receiver shared by two pipelines of the same signal (see ``check_graph``);
- pipelines whose first processor is not ``memory_limiter`` or that have no ``batch``.

``merge_configs`` reproduces how ``otelcol-contrib --config a.yaml --config b.yaml``
combines files: mappings are merged key by key, everything else (lists included) is
replaced by the later file.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")
PIPELINE_KINDS = ("receivers", "processors", "exporters")
SIGNALS = ("traces", "metrics", "logs", "profiles")

_SAME_SIGNAL = frozenset((s, s) for s in SIGNALS)
_TO_METRICS = frozenset((s, "metrics") for s in ("traces", "metrics", "logs"))
# Signal pairs (exporter side -> receiver side) each connector type supports.
CONNECTOR_SIGNALS: dict[str, frozenset[tuple[str, str]]] = {
    "forward": _SAME_SIGNAL,
    "routing": _SAME_SIGNAL,
    "roundrobin": _SAME_SIGNAL,
    "failover": _SAME_SIGNAL,
    "span_metrics": frozenset({("traces", "metrics")}),
    "service_graph": frozenset({("traces", "metrics")}),
    "datadog": frozenset({("traces", "metrics"), ("traces", "traces")}),
    "exceptions": frozenset({("traces", "metrics"), ("traces", "logs")}),
    "count": _TO_METRICS,
    "sum": _TO_METRICS,
    "signal_to_metrics": _TO_METRICS,
}

# Words fields.yaml uses to describe a key (as opposed to naming child keys).
_SPEC_WORDS = frozenset(
    {
        "type",
        "default",
        "defaults",
        "notes",
        "required",
        "enum",
        "ref",
        "keys",
        "item_keys",
        "extra_keys",
        "deprecated",
        "squashed",
        "optional",
        "values",
        "signals",
        "range",
        "contexts",
        "stability",
        "default_for",
        "engines",
        "extends",
        "extra",
        "validation",
    }
)


@dataclass
class Node:
    """What fields.yaml says about one config value.

    ``children`` None means the keys below are not described (anything is accepted);
    ``items`` describes the elements of a list value; ``enum`` the allowed strings.
    """

    children: dict[str, Node] | None = None
    items: Node | None = None
    enum: tuple[str, ...] | None = None

    @property
    def is_leaf(self) -> bool:
        return self.children is None and self.items is None


def _merge_node(old: Node | None, new: Node) -> Node:
    """A later, structure-less description (a default, a note) keeps the old structure."""
    if old is None:
        return new
    if new.is_leaf:
        return Node(old.children, old.items, new.enum or old.enum)
    return new


@dataclass
class ComponentCatalog:
    """Component types of one otelcol-contrib release and the keys of some of them."""

    version: str
    canonical: dict[str, frozenset[str]]
    aliases: dict[str, dict[str, str]]  # kind -> deprecated alias -> canonical type
    schemas: dict[tuple[str, str], Node]  # (kind, canonical type) -> keys
    shared_blocks: dict[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> ComponentCatalog:
        components = yaml.safe_load((directory / "components.yaml").read_text())
        fields = yaml.safe_load((directory / "fields.yaml").read_text())
        canonical = {kind: frozenset(components[kind]) for kind in KINDS}
        aliases: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        for kind in KINDS:
            for entry in components["components"][kind]:
                alias = entry.get("deprecated_alias")
                if alias:
                    aliases[kind][alias] = entry["type"]
        catalog = cls(
            version=str(components["version"]),
            canonical=canonical,
            aliases=aliases,
            schemas={},
            shared_blocks=fields["shared_blocks"],
        )
        builder = _SchemaBuilder(fields)
        for type_name, spec in fields["components"].items():
            kind = str(spec["kind"]).split()[0] + "s"
            catalog.schemas[(kind, type_name)] = builder.component(type_name)
        return catalog

    def resolve_type(self, kind: str, type_name: str) -> str | None:
        """The canonical type for a type name or a deprecated alias, None if unknown."""
        if type_name in self.canonical[kind]:
            return type_name
        return self.aliases[kind].get(type_name)


class _SchemaBuilder:
    """Turns fields.yaml's loosely structured descriptions into ``Node`` trees."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self._fields = fields
        self._shared: Mapping[str, Any] = fields["shared_blocks"]
        self._components: Mapping[str, Any] = fields["components"]
        self._building: set[str] = set()

    def component(self, type_name: str) -> Node:
        spec = self._components[type_name]
        self._building.add(type_name)
        try:
            node = self._mapping(spec.get("keys") or {})
        finally:
            self._building.discard(type_name)
        if type_name == "tail_sampling" and node.children is not None:
            node.children["policies"] = Node(items=self._tail_sampling_policy(spec, depth=0))
        return node

    # -- shapes ---------------------------------------------------------------------
    def _shared_block(self, name: str) -> Node:
        if name not in self._shared and name.endswith("_common_fields"):
            name = name.removesuffix("_common_fields")
        spec = self._shared[name]
        if isinstance(spec, Mapping) and ("extends" in spec or "extra" in spec):
            base = self._shared_block(str(spec["extends"])) if "extends" in spec else Node({})
            children = dict(base.children or {})
            for extra in spec.get("extra", []):
                children.setdefault(str(extra), Node())
            return Node(children)
        return self._mapping(spec)

    def _mapping(self, spec: Mapping[str, Any]) -> Node:
        children: dict[str, Node] = {}
        for raw_name, value in spec.items():
            name = str(raw_name)
            if name.startswith("<"):
                # "<http_client>": squashed shared block; "<engine>": one block per engine.
                if isinstance(value, Mapping) and "ref" in value:
                    for child, node in (self._shared_block(value["ref"]).children or {}).items():
                        children[child] = _merge_node(children.get(child), node)
                elif isinstance(value, Mapping) and "engines" in value:
                    for engine in value["engines"]:
                        children[str(engine)] = self._value(value)
                continue
            children[name] = _merge_node(children.get(name), self._value(value))
        return Node(children)

    def _value(self, spec: Any) -> Node:
        if isinstance(spec, str):
            return self._type(spec)
        if isinstance(spec, list):
            return Node({_key_name(item): Node() for item in spec})
        if not isinstance(spec, Mapping):
            return Node()
        if not set(map(str, spec)) <= _SPEC_WORDS:
            return self._mapping(spec)
        node = Node()
        if "ref" in spec:
            node = self._shared_block(str(spec["ref"]))
        if isinstance(spec.get("type"), str):
            node = _merge_node(node, self._type(spec["type"]))
        keys = spec.get("keys")
        if isinstance(keys, Mapping):
            children = dict(node.children or {})
            children.update(self._mapping(keys).children or {})
            node = Node(children, node.items)
        elif isinstance(keys, list):
            children = dict(node.children or {})
            children.update({_key_name(item): Node() for item in keys})
            node = Node(children, node.items)
        if isinstance(spec.get("extra_keys"), Mapping):
            children = dict(node.children or {})
            children.update(self._mapping(spec["extra_keys"]).children or {})
            node = Node(children, node.items)
        item_keys = spec.get("item_keys")
        if item_keys is not None:
            node = Node(node.children, self._value(item_keys))
        enum = spec.get("enum")
        if enum is None and isinstance(spec.get("values"), Mapping):
            enum = list(spec["values"])
        if isinstance(enum, list) and all(isinstance(e, str) and e != "..." for e in enum):
            node = Node(node.children, node.items, tuple(enum))
        return node

    def _type(self, type_text: str) -> Node:
        exporter_config = re.match(r"\s*(\w+) exporter config\b", type_text)
        if exporter_config and exporter_config.group(1) in self._components:
            name = exporter_config.group(1)
            if name not in self._building:
                return self.component(name)
        list_of_objects = re.fullmatch(r"\s*list\[\{([^}]*)\}\]\s*", type_text)
        if list_of_objects:
            names = [n.strip() for n in list_of_objects.group(1).split(",") if n.strip()]
            return Node(items=Node({n: Node() for n in names}))
        if re.fullmatch(r"\s*list\[dimension\]\s*", type_text):
            return Node(items=Node({n: Node() for n in ("name", "default", "glob")}))
        blocks = [t for t in re.findall(r"[A-Za-z_]+", type_text) if t in self._shared]
        node = Node()
        for block in blocks:
            shared = self._shared_block(block)
            children = dict(node.children or {})
            children.update(shared.children or {})
            node = Node(children)
        return node

    def _tail_sampling_policy(self, spec: Mapping[str, Any], depth: int) -> Node:
        """A policy: name, type and a block named after its type (composites nest)."""
        children: dict[str, Node] = {"name": Node(), "type": Node()}
        if depth > 3:
            return Node()
        for policy_type, block in spec["policy_types"].items():
            if str(policy_type).startswith("<"):
                continue
            keys: dict[str, Node] = {}
            for key in block or {}:
                if key == "notes":
                    continue
                if str(key).endswith("_sub_policy"):
                    sub = self._tail_sampling_policy(spec, depth + 1)
                    keys[str(key)] = Node(sub.children, sub)
                else:
                    keys[str(key)] = Node()
            children[str(policy_type)] = Node(keys or None)
        return Node(children)


def _key_name(item: Any) -> str:
    """``"action (insert|update)"`` -> ``"action"``."""
    return str(item).split()[0]


# --- loading -------------------------------------------------------------------------
def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a Collector config must be a mapping, got {type(data)}")
    return data


def merge_configs(configs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine configs like repeated ``--config``: deep-merge maps, replace the rest."""
    merged: dict[str, Any] = {}
    for config in configs:
        _merge_into(merged, config)
    return merged


def _merge_into(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def component_ids(config: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(kind, id) of every component a config defines."""
    return {
        (kind, str(component_id)) for kind in KINDS for component_id in (config.get(kind) or {})
    }


# --- checks ----------------------------------------------------------------------------
@dataclass
class CheckResult:
    """Problems found, the component ids defined but used nowhere (allowed only where the
    caller says so) and every config path whose key was verified against fields.yaml."""

    problems: list[str] = field(default_factory=list)
    unused: set[tuple[str, str]] = field(default_factory=set)
    verified_paths: set[str] = field(default_factory=set)


def check_config(
    config: Mapping[str, Any],
    catalog: ComponentCatalog,
    *,
    must_be_used: set[tuple[str, str]] | None = None,
    allowed_aliases: frozenset[str] = frozenset(),
    allowed_shared_receivers: frozenset[tuple[str, str]] = frozenset(),
) -> CheckResult:
    """Run every check on one (possibly merged) config.

    ``must_be_used``: the components that must appear in a pipeline (default: all). For
    a base merged with an overlay, pass the overlay's own components: base components
    that the overlay routes around are not started by the Collector.
    ``allowed_aliases``: deprecated type names accepted (``kind:alias``).
    ``allowed_shared_receivers``: (receiver id, signal) that may feed several pipelines.
    """
    result = CheckResult()
    types = _check_types(config, catalog, allowed_aliases, result)
    _check_keys(config, catalog, types, result)
    _check_graph(config, types, must_be_used, allowed_shared_receivers, result)
    return result


def _check_types(
    config: Mapping[str, Any],
    catalog: ComponentCatalog,
    allowed_aliases: frozenset[str],
    result: CheckResult,
) -> dict[tuple[str, str], str]:
    """Canonical type per defined component id (unknown types are left out)."""
    types: dict[tuple[str, str], str] = {}
    for kind in KINDS:
        section = config.get(kind) or {}
        if not isinstance(section, Mapping):
            result.problems.append(f"{kind}: must be a mapping of component ids")
            continue
        for component_id in section:
            type_name = str(component_id).split("/", 1)[0]
            canonical = catalog.resolve_type(kind, type_name)
            if canonical is None:
                result.problems.append(
                    f"{kind}.{component_id}: unknown {kind[:-1]} type {type_name!r} in "
                    f"otelcol-contrib {catalog.version}"
                )
                continue
            if canonical != type_name and f"{kind}:{type_name}" not in allowed_aliases:
                result.problems.append(
                    f"{kind}.{component_id}: {type_name!r} is a deprecated alias in "
                    f"otelcol-contrib {catalog.version}; use {canonical!r}"
                )
            types[(kind, str(component_id))] = canonical
    return types


def _check_keys(
    config: Mapping[str, Any],
    catalog: ComponentCatalog,
    types: Mapping[tuple[str, str], str],
    result: CheckResult,
) -> None:
    for (kind, component_id), canonical in sorted(types.items()):
        schema = catalog.schemas.get((kind, canonical))
        if schema is None:
            continue  # fields.yaml does not cover this component
        value = (config.get(kind) or {}).get(component_id)
        if value is None:
            continue  # `forward/x:` with no settings: all defaults
        _check_value(value, schema, f"{kind}.{component_id}", result)
        if canonical == "tail_sampling":
            _check_policies(value.get("policies") or [], f"{kind}.{component_id}", result)


def _check_value(value: Any, node: Node, path: str, result: CheckResult) -> None:
    if isinstance(value, Mapping) and node.children is not None:
        for key, child_value in value.items():
            child_path = f"{path}.{key}"
            child = node.children.get(str(key))
            if child is None:
                known = ", ".join(sorted(node.children)) or "none"
                result.problems.append(f"{child_path}: unknown key (known: {known})")
                continue
            result.verified_paths.add(child_path)
            _check_value(child_value, child, child_path, result)
    elif isinstance(value, list) and node.items is not None:
        for index, item in enumerate(value):
            _check_value(item, node.items, f"{path}[{index}]", result)
    elif (
        isinstance(value, str)
        and node.enum is not None
        and "${" not in value
        and value not in node.enum
    ):
        result.problems.append(f"{path}: {value!r} is not one of {list(node.enum)}")


def _check_policies(policies: list[Any], path: str, result: CheckResult) -> None:
    """A tail-sampling policy carries exactly the block named by its type."""
    for index, policy in enumerate(policies):
        if not isinstance(policy, Mapping):
            continue
        policy_type = policy.get("type")
        blocks = set(policy) - {"name", "type"}
        if blocks and blocks != {policy_type}:
            result.problems.append(
                f"{path}.policies[{index}]: type {policy_type!r} but settings block(s) "
                f"{sorted(blocks)}"
            )


def _pipelines(config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    service = config.get("service") or {}
    return dict(service.get("pipelines") or {})


def _check_graph(
    config: Mapping[str, Any],
    types: Mapping[tuple[str, str], str],
    must_be_used: set[tuple[str, str]] | None,
    allowed_shared_receivers: frozenset[tuple[str, str]],
    result: CheckResult,
) -> None:
    """Wiring rules.

    Shared receivers: a receiver listed in two pipelines of the SAME signal hands a full
    copy of every span/metric to each of them, so everything behind both is processed and
    exported twice (double-counted metrics, duplicate traces). Our configs express
    fan-out once, in one place: several exporters of one pipeline, or a connector into a
    second pipeline. A receiver in a traces and a metrics pipeline is normal (each gets
    its own signal); same-signal sharing must be listed in ``allowed_shared_receivers``.
    """
    defined = component_ids(config)
    pipelines = _pipelines(config)
    used: set[tuple[str, str]] = set()
    receiver_use: dict[tuple[str, str], list[str]] = {}
    connector_sides: dict[str, dict[str, set[str]]] = {}

    if not pipelines:
        result.problems.append("service.pipelines: no pipelines")
    for pipeline_id, pipeline in pipelines.items():
        signal = str(pipeline_id).split("/", 1)[0]
        where = f"service.pipelines.{pipeline_id}"
        if signal not in SIGNALS:
            result.problems.append(f"{where}: unknown signal {signal!r}")
            continue
        pipeline = pipeline or {}
        for key in pipeline:
            if key not in PIPELINE_KINDS:
                result.problems.append(f"{where}.{key}: unknown key")
        for kind in PIPELINE_KINDS:
            for component_id in pipeline.get(kind) or []:
                component_id = str(component_id)
                ref_kind = kind
                if kind in ("receivers", "exporters") and ("connectors", component_id) in defined:
                    ref_kind = "connectors"
                    side = "exporter" if kind == "exporters" else "receiver"
                    sides = connector_sides.setdefault(
                        component_id, {"exporter": set(), "receiver": set()}
                    )
                    sides[side].add(signal)
                if (ref_kind, component_id) not in defined:
                    result.problems.append(
                        f"{where}.{kind}: {component_id!r} is not defined under {kind}"
                        + (" or connectors" if kind != "processors" else "")
                    )
                    continue
                used.add((ref_kind, component_id))
                if ref_kind == "receivers":
                    receiver_use.setdefault((component_id, signal), []).append(str(pipeline_id))
        if not pipeline.get("receivers"):
            result.problems.append(f"{where}: no receivers")
        if not pipeline.get("exporters"):
            result.problems.append(f"{where}: no exporters")
        _check_processors([str(p) for p in pipeline.get("processors") or []], types, where, result)

    for extension in (config.get("service") or {}).get("extensions") or []:
        if ("extensions", str(extension)) not in defined:
            result.problems.append(f"service.extensions: {extension!r} is not defined")
        used.add(("extensions", str(extension)))

    for (receiver, signal), users in sorted(receiver_use.items()):
        if len(users) > 1 and (receiver, signal) not in allowed_shared_receivers:
            result.problems.append(
                f"receivers.{receiver}: feeds {len(users)} {signal} pipelines {sorted(users)}; "
                "fan out with several exporters or a connector instead"
            )

    for connector, sides in sorted(connector_sides.items()):
        _check_connector(connector, types, sides, result)

    unused = defined - used
    required = defined if must_be_used is None else must_be_used & defined
    for kind, component_id in sorted(unused & required):
        where = "service.extensions" if kind == "extensions" else "any pipeline"
        result.problems.append(f"{kind}.{component_id}: defined but not used in {where}")
    result.unused = unused - required


def _check_processors(
    processors: list[str],
    types: Mapping[tuple[str, str], str],
    where: str,
    result: CheckResult,
) -> None:
    kinds = [types.get(("processors", p), p.split("/", 1)[0]) for p in processors]
    if not kinds or kinds[0] != "memory_limiter":
        result.problems.append(f"{where}.processors: memory_limiter must come first")
    if "batch" not in kinds:
        result.problems.append(f"{where}.processors: no batch processor")


def _check_connector(
    connector: str,
    types: Mapping[tuple[str, str], str],
    sides: Mapping[str, set[str]],
    result: CheckResult,
) -> None:
    where = f"connectors.{connector}"
    if not sides["exporter"]:
        result.problems.append(f"{where}: used as receiver but no pipeline exports to it")
    if not sides["receiver"]:
        result.problems.append(f"{where}: used as exporter but no pipeline receives from it")
    canonical = types.get(("connectors", connector))
    if canonical is None:
        return
    supported = CONNECTOR_SIGNALS.get(canonical)
    if supported is None:
        result.problems.append(f"{where}: no signal table for connector type {canonical!r}")
        return
    for exported in sorted(sides["exporter"]):
        for received in sorted(sides["receiver"]):
            if (exported, received) not in supported:
                result.problems.append(
                    f"{where}: {canonical} cannot connect {exported} to {received}"
                )
