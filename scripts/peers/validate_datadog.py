#!/usr/bin/env python3
"""Judge Datadog payloads with Datadog's own client models (datadog-api-client).

    validate_datadog.py metric_payload FILE     # FILE: JSON lines, one payload per line
                                                # (what `skydeck collect --dry-run` prints)

Exit 0 when every payload is a valid v2 `MetricPayload`, 1 otherwise (one line per problem on
stderr, naming the payload's line and the path inside it). Run it with the tools venv's python
(scripts/peers/pytools.sh).

The generated models are lenient in two ways that would let a wrong payload through:
deserialization keeps an unknown enum value or unmatched schema as an "unparsed" object instead
of raising, and it accepts unknown keys as additional properties. This script deserializes with
type checking and then walks the result, rejecting both.
"""
import json
import sys

from datadog_api_client import Configuration
from datadog_api_client.api_client import ApiClient
from datadog_api_client.model_utils import ModelSimple, OpenApiModel, UnparsedObject
from datadog_api_client.v2.model.metric_payload import MetricPayload

MODELS = {"metric_payload": MetricPayload}


def problems_in(node, where):
    """Yields a message for every unparsed value and unknown key below `node`."""
    if isinstance(node, UnparsedObject):
        yield f"{where}: not a valid value for its schema: {str(node._data_store)[:200]}"
        return
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from problems_in(item, f"{where}[{i}]")
        return
    if not isinstance(node, OpenApiModel):
        return
    store = node._data_store
    if getattr(node, "_unparsed", False):
        yield f"{where}: {type(node).__name__} did not parse (unknown enum value or shape)"
    if not isinstance(node, ModelSimple):
        allowed = type(node).attribute_map
        for key in store:
            if key not in allowed:
                yield f"{where}.{key}: {type(node).__name__} has no field {key!r}"
    for key, value in store.items():
        yield from problems_in(value, f"{where}.{key}")


def main(argv):
    if len(argv) != 3 or argv[1] not in MODELS:
        print(__doc__, file=sys.stderr)
        return 2
    model = MODELS[argv[1]]
    client = ApiClient(Configuration())
    bad = 0
    count = 0
    with open(argv[2], encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            count += 1
            try:
                json.loads(line)
                obj = client.deserialize(line, (model,), True)
                problems = list(problems_in(obj, argv[1]))
            except Exception as e:  # ApiTypeError, ApiValueError, missing required fields
                problems = [f"{type(e).__name__}: {e}"]
            for p in problems:
                print(f"line {lineno}: {p}", file=sys.stderr)
            bad += bool(problems)
    if count == 0:
        print("no payloads to validate", file=sys.stderr)
        return 1
    print(f"{count - bad} of {count} payloads valid")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
