"""What the CRDs of the custom resources the chart emits require of them.

kubernetes-validate ships the schemas of core Kubernetes only, not of CRDs, so the
KEDA and Prometheus Operator objects get this check instead: a hand-written subset
of each CRD's openAPIV3Schema with its `required` fields and the types of the
fields the chart sets, validated with jsonschema. Taken from
- KEDA 2.x `config/crd/bases/keda.sh_scaledobjects.yaml` and
  `keda.sh_triggerauthentications.yaml` (keda.sh/v1alpha1): a ScaledObject needs
  `spec.scaleTargetRef.name` and `spec.triggers[].{type,metadata}`, trigger
  metadata values are strings, an `authenticationRef` needs `name`; a
  `secretTargetRef` entry needs `parameter`, `name` and `key`;
- prometheus-operator 0.84 `monitoring.coreos.com_servicemonitors.yaml`
  (monitoring.coreos.com/v1): `spec` with `selector` and `endpoints`, durations
  matching the operator's pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jsonschema

Schema = dict[str, Any]


def _object(properties: Schema, required: Sequence[str] = ()) -> Schema:
    return {"type": "object", "required": list(required), "properties": properties}


def _array(items: Schema, min_items: int = 0) -> Schema:
    return {"type": "array", "minItems": min_items, "items": items}


def _resource(spec: Schema) -> Schema:
    """A namespaced object: `metadata.name` and a `spec`."""
    return _object({"metadata": _object({"name": _STRING}, ["name"]), "spec": spec}, ["spec"])


_STRING = {"type": "string", "minLength": 1}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_INT32 = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
_NAMED = _object({"name": _STRING}, ["name"])
_DURATION = {
    "type": "string",
    "pattern": (
        r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
        r"(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
    ),
}

SCALED_OBJECT = _resource(
    _object(
        {
            "scaleTargetRef": _NAMED,
            "minReplicaCount": _INT32,
            "maxReplicaCount": _INT32,
            "pollingInterval": _INT32,
            "cooldownPeriod": _INT32,
            "triggers": _array(
                _object(
                    {"type": _STRING, "metadata": _STRING_MAP, "authenticationRef": _NAMED},
                    ["type", "metadata"],
                ),
                min_items=1,
            ),
        },
        ["scaleTargetRef", "triggers"],
    )
)

TRIGGER_AUTHENTICATION = _resource(
    _object(
        {
            "secretTargetRef": _array(
                _object(
                    {"parameter": _STRING, "name": _STRING, "key": _STRING},
                    ["parameter", "name", "key"],
                )
            )
        }
    )
)

SERVICE_MONITOR = _resource(
    _object(
        {
            "selector": _object({"matchLabels": _STRING_MAP}),
            "namespaceSelector": _object({"matchNames": _array({"type": "string"})}),
            "endpoints": _array(
                _object(
                    {
                        "port": _STRING,
                        "path": _STRING,
                        "interval": _DURATION,
                        "scrapeTimeout": _DURATION,
                    }
                )
            ),
        },
        ["selector", "endpoints"],
    )
)

CRD_SCHEMAS: dict[tuple[str, str], Schema] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTHENTICATION,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
}


def crd_errors(obj: dict[str, Any]) -> list[str]:
    """Where a custom resource misses what its CRD requires ([] when it does not)."""
    schema = CRD_SCHEMAS[(obj["apiVersion"], obj["kind"])]
    return sorted(
        "/".join(map(str, error.absolute_path)) + ": " + error.message
        for error in jsonschema.Draft7Validator(schema).iter_errors(obj)
    )
