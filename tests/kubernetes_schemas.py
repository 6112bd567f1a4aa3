"""Strict validation of rendered Kubernetes objects, and the Helm binary that renders them.

Usage (from a test)::

    from kubernetes_schemas import helm_template, validate

    objects = helm_template(chart_dir, "--set", "serviceMonitor.enabled=true")
    assert validate(objects) == []

:func:`validate` checks every object against the schema of its ``apiVersion`` and ``kind`` the way
``kubectl apply --validate=strict`` or ``kubeconform -strict`` would: an unknown field at any depth,
a wrong type, a missing required field, a value outside an enum or a pattern, or an apiVersion/kind
the schemas do not know, is a problem. Built-in kinds are checked against the OpenAPI v3 documents of
Kubernetes :data:`KUBERNETES_VERSION`, the ``monitoring.coreos.com`` kinds (ServiceMonitor,
PodMonitor, PrometheusRule, ...) against the ``openAPIV3Schema`` of the Prometheus Operator's CRDs,
with their ``metadata`` checked as the ObjectMeta it is.

The OpenAPI schemas become JSON Schema (draft 2020-12) in :func:`openapi_to_json_schema`, with the
Kubernetes conventions spelled out:

- an object schema that lists ``properties`` admits no other field (``additionalProperties:
  false``) unless it says ``x-kubernetes-preserve-unknown-fields``; one without ``properties`` is a
  map (labels, annotations, ``data``) checked by its ``additionalProperties``, or free-form;
- int-or-string (``x-kubernetes-int-or-string``, ``format: int-or-string``) is an integer or a
  string; a resource quantity is a string or a number (``cpu: 0.5``, ``memory: 128Mi``);
- ``nullable: true`` admits ``null``; anywhere else ``null`` is a wrong type (Helm renders ``null``
  for a value it was never given, which is a chart bug worth seeing).

Not checked: ``format`` (date-time, byte, int32 ranges), CEL rules (``x-kubernetes-validations``) and
whatever only the API server or an admission webhook decides (immutable fields, name lengths).

The schemas and the Helm binary come from ``observability/kubernetes/tools/schemas.sh`` and
``helm.sh``; each builds or fetches once into a cache and prints its path, so the first call on a
fresh machine takes minutes and later ones milliseconds. Environment: the scripts' own,
``INFERWATCH_K8S_SCHEMAS_CACHE`` and ``INFERWATCH_HELM_CACHE``, e.g.
``INFERWATCH_HELM_CACHE=/var/cache/helm``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "observability" / "kubernetes" / "tools"
# The cluster version the objects are validated for, also given to `helm template --kube-version`.
# It is the version pinned in schemas.sh.
KUBERNETES_VERSION = "v1.34.2"
# How long the first, uncached run of a tool script may take (the Helm build: minutes).
TOOL_TIMEOUT = 1800

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# Named schemas that the OpenAPI documents describe more narrowly than the API server decodes them.
SCALAR_UNIONS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": ["integer", "string"]},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": ["string", "number"]},
}


def run_tool(script: str) -> Path:
    """The path that a script in observability/kubernetes/tools prints last (its log on failure)."""
    done = subprocess.run(["bash", str(TOOLS / script)], capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed with exit code {done.returncode}:\n{done.stderr}")
    return Path(done.stdout.splitlines()[-1])


@functools.cache
def helm_binary() -> Path:
    """Path of the Helm binary, built by helm.sh on first use."""
    return run_tool("helm.sh")


@functools.cache
def schemas_dir() -> Path:
    """Directory with ``openapi-v3/*.json`` and ``crds/*.yaml``, fetched by schemas.sh on first use."""
    return run_tool("schemas.sh")


def helm(*args: str | Path, cwd: Path | None = None) -> str:
    """Runs Helm with ``args`` and returns its stdout; raises with Helm's stderr when it fails."""
    done = subprocess.run([str(helm_binary()), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"helm {' '.join(map(str, args))} failed:\n{done.stderr}")
    return done.stdout


def helm_template(chart: Path, *args: str) -> list[dict]:
    """The objects ``helm template`` renders from ``chart`` for :data:`KUBERNETES_VERSION`."""
    return load_objects(helm("template", chart, "--kube-version", KUBERNETES_VERSION, *args))


class KubernetesYamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """PyYAML's safe loader (libyaml's, ten times faster on the CRDs' 4 MB), reading two plain
    scalars as Kubernetes' YAML reader does: ``=`` (a "value" tag to PyYAML, found in CRD enums)
    and timestamps (``2026-12-01``) stay strings."""


for _tag in ("tag:yaml.org,2002:value", "tag:yaml.org,2002:timestamp"):
    KubernetesYamlLoader.add_constructor(_tag, yaml.SafeLoader.construct_scalar)


def load_objects(documents: str) -> list[dict]:
    """The objects of a multi-document YAML stream, empty documents left out."""
    return [document for document in yaml.load_all(documents, Loader=KubernetesYamlLoader)
            if document is not None]


def validate(objects: Iterable[Any], schemas: Schemas | None = None) -> list[str]:
    """Every problem found in ``objects``, one line each, e.g.
    ``Deployment/web: spec.template.spec.containers[0].imagePullPolicyy: unknown field``;
    an empty list when all of them are valid."""
    schemas = schemas or default_schemas()
    return [problem for obj in objects for problem in schemas.problems(obj)]


@functools.cache
def default_schemas() -> Schemas:
    return Schemas(schemas_dir())


class Schemas:
    """The schemas in a directory made by schemas.sh, turned into validators as kinds are asked for."""

    def __init__(self, directory: Path):
        self.openapi_dir = directory / "openapi-v3"
        self.crd_dir = directory / "crds"
        self._validators: dict[tuple[str, str], Draft202012Validator | None] = {}
        self._documents: dict[str, dict | None] = {}

    def problems(self, obj: Any) -> list[str]:
        """The problems of one object, each prefixed with its kind and name."""
        if not isinstance(obj, Mapping):
            return [f"{obj!r}: not an object"]
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        name = (obj.get("metadata") or {}).get("name", "<no name>")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return [f"{kind}/{name}: apiVersion and kind must both be set to strings"]
        validator = self.validator(api_version, kind)
        if validator is None:
            return [f"{kind}/{name}: {api_version} {kind} is not a kind known to Kubernetes "
                    f"{KUBERNETES_VERSION} or the Prometheus Operator's CRDs"]
        errors = sorted(validator.iter_errors(obj), key=lambda error: list(error.absolute_path))
        return [f"{kind}/{name}: {line}" for error in errors for line in describe(error)]

    @functools.cached_property
    def crds(self) -> dict[tuple[str, str], dict]:
        return crd_versions(self.crd_dir)

    def validator(self, api_version: str, kind: str) -> Draft202012Validator | None:
        key = (api_version, kind)
        if key not in self._validators:
            self._validators[key] = self._build_validator(api_version, kind)
        return self._validators[key]

    def _build_validator(self, api_version: str, kind: str) -> Draft202012Validator | None:
        if document := self._document(api_version):
            group, _, version = api_version.rpartition("/")
            for name, schema in document["components"]["schemas"].items():
                if {"group": group, "version": version, "kind": kind} in schema.get(
                        "x-kubernetes-group-version-kind", []):
                    return self._validator_in(document, {"$ref": f"#/components/schemas/{name}"})
            return None
        if crd_schema := self.crds.get((api_version, kind)):
            # A custom resource's metadata is ObjectMeta, though its CRD only says `type: object`.
            root = copy.deepcopy(crd_schema)
            root["properties"]["metadata"] = {"$ref": f"#/components/schemas/{OBJECT_META}"}
            return self._validator_in(self._document("v1"), root)
        return None

    @staticmethod
    def _validator_in(document: dict, root: dict) -> Draft202012Validator:
        """A validator of ``root``, whose ``$ref``s point into ``document``'s components."""
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                  **openapi_to_json_schema(root), "components": document["components"]}
        return Draft202012Validator(schema)

    def _document(self, api_version: str) -> dict | None:
        """The OpenAPI document of a group version (``v1``, ``apps/v1``), converted once."""
        if api_version not in self._documents:
            self._documents[api_version] = self._load_document(api_version)
        return self._documents[api_version]

    def _load_document(self, api_version: str) -> dict | None:
        group, _, version = api_version.rpartition("/")
        name = f"apis__{group}__{version}_openapi.json" if group else f"api__{version}_openapi.json"
        path = self.openapi_dir / name
        if not path.is_file():
            return None
        document = json.loads(path.read_text())
        schemas = document["components"]["schemas"]
        for schema_name, schema in schemas.items():
            schemas[schema_name] = openapi_to_json_schema(SCALAR_UNIONS.get(schema_name, schema))
        return document


def crd_versions(directory: Path) -> dict[tuple[str, str], dict]:
    """``(apiVersion, kind)`` -> openAPIV3Schema for every served version of the CRDs in ``directory``."""
    found = {}
    for path in sorted(directory.glob("*.yaml")):
        for crd in load_objects(path.read_text()):
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if version.get("served", True):
                    api_version = f"{spec['group']}/{version['name']}"
                    found[(api_version, spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return found


def openapi_to_json_schema(schema: Any) -> Any:
    """An OpenAPI v3 (Kubernetes flavour) schema as the strict JSON Schema described above."""
    if isinstance(schema, list):
        return [openapi_to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: openapi_to_json_schema(value) if key in SUBSCHEMA_KEYWORDS else value
                 for key, value in schema.items()}
    if "properties" in converted:
        converted["properties"] = {name: openapi_to_json_schema(sub)
                                   for name, sub in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            converted.setdefault("additionalProperties", False)
    if schema.get("x-kubernetes-int-or-string") or schema.get("format") == "int-or-string":
        # CRDs spell it as anyOf integer/string, the built-in schemas as oneOf with this format.
        converted.pop("anyOf", None)
        converted.pop("oneOf", None)
        converted["type"] = ["integer", "string"]
    if "pattern" in converted:
        converted["pattern"] = python_pattern(converted["pattern"])
    if schema.get("nullable") and "type" in converted:
        types = converted["type"] if isinstance(converted["type"], list) else [converted["type"]]
        converted["type"] = [*types, "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
    return converted


def python_pattern(pattern: str) -> str:
    """A Go (RE2) pattern for Python's re: flags such as ``^(?i)`` must come first there."""
    return re.sub(r"^\^\(\?([ims]+)\)", r"(?\1)^", pattern)


# Keywords whose value is a schema or a list of schemas (``properties`` is handled on its own: its
# value is a map of names to schemas).
SUBSCHEMA_KEYWORDS = {"items", "additionalProperties", "allOf", "anyOf", "oneOf", "not"}


def describe(error: ValidationError) -> Iterator[str]:
    """One line per problem in ``error``, starting with the path of the offending field."""
    path = field_path(error.absolute_path)
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        for name in sorted(set(error.instance) - set(known)):
            yield f"{field_path([*error.absolute_path, name])}: unknown field"
    elif error.validator == "required":
        yield f"{path}: missing required field {error.message.split(' is a required')[0]}"
    elif error.validator == "type":
        yield f"{path}: {error.instance!r} is not of type {error.validator_value}"
    else:
        yield f"{path}: {error.message}"


def field_path(parts: Iterable[str | int]) -> str:
    """``spec.template.spec.containers[0].name``; keys that are not identifiers go in quotes."""
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum():
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part)}]"
    return path or "<top level>"
