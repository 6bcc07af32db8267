"""Generate the JSON Schema of every event into ``schemas/json/``.

Producers in other languages (phone apps, EHR bridges) build against these
files; a test fails when the models and the files drift. Regenerate with
``python -m schemas.jsonschema``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from schemas.events import EVENT_MODELS

JSON_DIR = Path(__file__).with_name("json")
SCHEMA_ID_BASE = "https://psymon.dev/schemas/v1/"


def _without_examples(description: str) -> str:
    """A docstring without its doctest examples: they are for Python readers."""
    kept = []
    for line in description.splitlines():
        if line.lstrip().startswith(">>>"):
            break
        kept.append(line)
    return "\n".join(kept).strip()


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _without_examples(v) if k == "description" and isinstance(v, str) else _clean(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def schema_documents() -> dict[str, str]:
    """File name -> JSON text for every event model, in validation mode."""
    documents: dict[str, str] = {}
    for model in EVENT_MODELS:
        schema: dict[str, Any] = _clean(model.model_json_schema(mode="validation"))
        name = f"{model.__name__}.json"
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_ID_BASE + name,
            **schema,
        }
        documents[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return documents


def write(directory: Path = JSON_DIR) -> list[Path]:
    """Write every schema file and remove stale ones; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    documents = schema_documents()
    for stale in directory.glob("*.json"):
        if stale.name not in documents:
            stale.unlink()
    written = []
    for name, text in documents.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - a developer's command
    for path in write():
        print(path, file=sys.stderr)
