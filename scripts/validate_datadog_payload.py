#!/usr/bin/env python3
"""Validate captured Datadog request bodies against the official API models.

    validate_datadog_payload.py series:BODY.json distribution:BODY.json ...

`series` bodies (POST /api/v2/series) are deserialized into the
datadog-api-client v2 `MetricPayload`, `distribution` bodies
(POST /api/v1/distribution_points) into the v1 `DistributionPointsPayload`.
A body fails when deserialization raises, when anything, at any depth,
lands in `_unparsed` (the client's bin for values that do not fit the
schema), or when it carries a field the schema does not define (which the
client would otherwise keep silently). Bodies are uncompressed JSON. Exit status 0 = all valid.
"""
import json
import sys

from datadog_api_client import Configuration
from datadog_api_client.model_utils import (
    ModelComposed,
    ModelNormal,
    ModelSimple,
    validate_and_convert_types,
)
from datadog_api_client.v1.model.distribution_points_payload import DistributionPointsPayload
from datadog_api_client.v2.model.metric_payload import MetricPayload

KINDS = {"series": MetricPayload, "distribution": DistributionPointsPayload}


def unparsed(obj, path="body"):
    """Every place where the client kept something it could not parse."""
    found = []
    if isinstance(obj, (ModelNormal, ModelComposed, ModelSimple)):
        if getattr(obj, "_unparsed", False):
            found.append(path)
        store = getattr(obj, "_data_store", {})
        for k, v in store.items():
            found += unparsed(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found += unparsed(v, f"{path}[{i}]")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            found += unparsed(v, f"{path}.{k}")
    return found


def unknown_keys(obj, raw, path="body"):
    """JSON keys the model does not define (the client keeps them silently)."""
    found = []
    if isinstance(obj, ModelNormal) and isinstance(raw, dict):
        by_json = {v: k for k, v in obj.attribute_map.items()}
        for key, value in raw.items():
            attr = by_json.get(key)
            if attr is None:
                found.append(f"{path}.{key}")
                continue
            found += unknown_keys(obj._data_store.get(attr), value, f"{path}.{key}")
    elif isinstance(obj, (list, tuple)) and isinstance(raw, list):
        for i, (o, r) in enumerate(zip(obj, raw)):
            found += unknown_keys(o, r, f"{path}[{i}]")
    return found


def validate(kind, path):
    model = KINDS[kind]
    with open(path, "rb") as f:
        data = json.loads(f.read())
    cfg = Configuration()
    obj = validate_and_convert_types(data, (model,), ["received_data"], True, True, configuration=cfg)
    if not isinstance(obj, model):
        raise TypeError(f"deserialized into {type(obj).__name__}, not {model.__name__}")
    bad = unparsed(obj)
    if bad:
        raise ValueError("unparsed fields: " + ", ".join(bad[:10]))
    extra = unknown_keys(obj, data)
    if extra:
        raise ValueError("fields not in the schema: " + ", ".join(extra[:10]))
    return len(obj.series)


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    failed = 0
    for arg in argv:
        kind, _, path = arg.partition(":")
        try:
            n = validate(kind, path)
            print(f"ok {kind} {path} ({n} series)")
        except Exception as e:  # noqa: BLE001 - report every failure
            failed += 1
            print(f"INVALID {kind} {path}: {type(e).__name__}: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
