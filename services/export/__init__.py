"""Export: the store's tables and views as Parquet, CSV or FHIR R4, with a manifest.

``psymon export`` calls :func:`export`. Every file is described in
``manifest.json`` (the query, row counts, sha256 of each file, the store's
schema version, psymon's version and commit, the snapshot read) so that a
study can cite exactly what it used, and every export is recorded in the
audit log. The researcher's guide is docs/research.md.
"""

from __future__ import annotations

from services.export.fhir import FHIR_SOURCES
from services.export.relations import BASE_TABLES, RAW_COLUMNS, exportable_names
from services.export.run import FORMATS, Format, export
from services.replay.provenance import Manifest

__all__ = [
    "BASE_TABLES",
    "FHIR_SOURCES",
    "FORMATS",
    "RAW_COLUMNS",
    "Format",
    "Manifest",
    "export",
    "exportable_names",
]
