"""Generate the reference pages of docs/ from the code that defines them.

The event reference comes from the JSON Schemas, the clinical catalogue from
:mod:`schemas.instruments`, :mod:`schemas.analytes` and :mod:`schemas.wearables`,
the configuration reference from :class:`services.settings.Settings`. A test
fails when the checked-in pages drift; regenerate with
``python -m services.reference_docs``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schemas.analytes import ANALYTES
from schemas.instruments import INSTRUMENTS
from schemas.jsonschema import schema_documents
from schemas.wearables import METRICS
from services.settings import Settings

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "docs" / "reference"


def _type_of(spec: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in spec:
        return str(spec["$ref"]).rsplit("/", 1)[-1]
    if "const" in spec:
        return f"`{spec['const']}`"
    if "enum" in spec:
        return " \\| ".join(f"`{v}`" for v in spec["enum"])
    if "anyOf" in spec:
        return " or ".join(_type_of(s, defs) for s in spec["anyOf"])
    kind = spec.get("type", "any")
    if kind == "array":
        return f"array of {_type_of(spec.get('items', {}), defs)}"
    if kind == "object" and "additionalProperties" in spec:
        return f"object of {_type_of(spec['additionalProperties'], defs)}"
    if spec.get("format"):
        return f"{kind} ({spec['format']})"
    return str(kind)


def _fields_table(schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = ["| field | type | required | default |", "|---|---|---|---|"]
    for name, spec in schema.get("properties", {}).items():
        default = spec.get("default", "")
        shown = "" if default == "" else f"`{json.dumps(default)}`"
        lines.append(
            f"| `{name}` | {_type_of(spec, defs)} | {'yes' if name in required else ''} | {shown} |"
        )
    return lines


def events_page() -> str:
    """Markdown reference of every event model, from its JSON Schema."""
    out = [
        "# Event reference",
        "",
        "Generated from `schemas/json/` by `python -m services.reference_docs`; do not edit.",
        "Producers in other languages build against the JSON Schema files themselves.",
        "",
    ]
    for name, text in schema_documents().items():
        schema = json.loads(text)
        defs = schema.get("$defs", {})
        title = name.removesuffix(".json")
        out += [f"## {title}", "", (schema.get("description") or "").strip(), ""]
        out += _fields_table(schema, defs)
        out.append("")
        for def_name, definition in sorted(defs.items()):
            if definition.get("type") == "object" and def_name not in ("Source",):
                out += [f"### {title}: {def_name}", ""]
                out += _fields_table(definition, defs)
                out.append("")
    out += ["## Source (every event)", ""]
    any_schema = json.loads(next(iter(schema_documents().values())))
    out += _fields_table(any_schema["$defs"]["Source"], {})
    return "\n".join(out).rstrip() + "\n"


def _range(low: float, high: float) -> str:
    return f"{low:g}-{high:g}"


def catalogue_page() -> str:
    """Markdown reference of instruments, analytes and wearable metrics, with sources."""
    out = [
        "# Clinical catalogue",
        "",
        "Generated from `schemas/instruments`, `schemas/analytes` and `schemas/wearables` by",
        "`python -m services.reference_docs`; do not edit. Each row's source is in its citation.",
        "",
        "## Instruments",
        "",
        "| id | name | items | total | bands | remission | response | reliable change "
        "| LOINC | raters |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for inst in INSTRUMENTS.values():
        items = (
            f"{len(inst.items)} ({', '.join(sorted({_range(i.low, i.high) for i in inst.items}))})"
        )
        bands = "; ".join(f"{b.low}-{b.high} {b.label}" for b in inst.bands) or "-"
        remission = f"<= {inst.remission_max}" if inst.remission_max is not None else "-"
        if inst.remission_items:
            remission += f"; items {', '.join(inst.remission_items)} <= {inst.remission_item_max}"
        response = f">= {inst.response_drop:.0%} drop" if inst.response_drop else "-"
        rci = "-"
        if inst.rci is not None:
            rci = (
                f"{inst.rci.threshold:.1f} points (SD {inst.rci.sd:g}, r {inst.rci.reliability:g})"
            )
            if inst.rci.practice_points is not None:
                rci += f"; services use {inst.rci.practice_points}"
        loinc = ", ".join(c for c in (inst.loinc_total, inst.loinc_panel) if c) or "-"
        out.append(
            f"| `{inst.id}` | {inst.name} | {items} | {inst.total_low}-{inst.total_high} | {bands} "
            f"| {remission} | {response} | {rci} | {loinc} | {', '.join(sorted(inst.raters))} |"
        )
    out += ["", "### Sources", ""]
    out += [f"* **{inst.name}**: {_one_line(inst.citation)}" for inst in INSTRUMENTS.values()]
    out += [
        "",
        "## Lab analytes",
        "",
        "| id | name | LOINC | unit | accepted units | rules | plausible |",
        "|---|---|---|---|---|---|---|",
    ]
    for analyte in ANALYTES.values():
        rules = "; ".join(
            f"{'>=' if b.inclusive else '>'} {b.start:g}: {b.status.label} ({b.status.severity})"
            for b in analyte.bands
        )
        rules = rules or "no validated cut-off: deviation from the patient's own baseline"
        out.append(
            f"| `{analyte.id}` | {analyte.name} | {', '.join(analyte.loinc_codes)} "
            f"| {analyte.unit} "
            f"| {', '.join(analyte.accepted_units)} | {rules} "
            f"| {_range(analyte.plausible_low, analyte.plausible_high)} |"
        )
    out += ["", "### Sources", ""]
    out += [f"* **{a.name}**: {_one_line(a.citation)}" for a in ANALYTES.values()]
    out += [
        "",
        "## Wearable metrics",
        "",
        "| id | name | unit | accepted units | plausible per sample | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for metric in METRICS.values():
        out.append(
            f"| `{metric.id}` | {metric.name} | {metric.unit} | {', '.join(metric.accepted_units)} "
            f"| {_range(metric.low, metric.high)} | {_one_line(metric.description)} |"
        )
    return "\n".join(out).rstrip() + "\n"


def configuration_page() -> str:
    """Markdown reference of every ``PSYMON_`` setting, from the settings class."""
    out = [
        "# Configuration reference",
        "",
        "Generated from `services/settings.py` by `python -m services.reference_docs`;",
        "do not edit.",
        "Every setting is an environment variable (or a line of `.env`). A missing or malformed",
        "one stops the program at start with a message naming the variable.",
        "",
        "| variable | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(unset)" if default is None else f"`{default}`"
        annotation = str(field.annotation).replace("pydantic.types.", "").replace("typing.", "")
        annotation = annotation.replace("pathlib.", "").replace("<class '", "").replace("'>", "")
        annotation = annotation.replace(" | ", " or ")
        meaning = _one_line(field.description or "")
        out.append(f"| `PSYMON_{name.upper()}` | {annotation} | {shown} | {meaning} |")
    return "\n".join(out).rstrip() + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


PAGES: dict[str, Callable[[], str]] = {
    "events.md": events_page,
    "clinical-catalogue.md": catalogue_page,
    "configuration.md": configuration_page,
}


def write(directory: Path = REFERENCE_DIR) -> list[Path]:
    """Write every reference page; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, render in PAGES.items():
        path = directory / name
        path.write_text(render(), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - a developer's command
    for path in write():
        print(path, file=sys.stderr)
