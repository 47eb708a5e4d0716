"""Record parsers and the ingest pipeline: FHIR R4 (Bundle, resource, NDJSON), Synthea CSV, VCF, images.

Parsers turn one file into a :class:`ParsedFile` (a :class:`~graph.schema.GraphBatch` plus
counts of resources seen and skipped); :func:`ingest_paths` writes each file into a
:class:`~graph.store.base.GraphStore` as one transaction and returns an :class:`IngestReport`.
"""

from graph.ingest.builder import ParsedFile, in_namespace, locate_error
from graph.ingest.fhir import parse_bundle, parse_fhir_resources, parse_json_text, parse_ndjson
from graph.ingest.pipeline import expand_paths, ingest_paths, parse_file, parse_path
from graph.ingest.report import FileReport, IngestReport

__all__ = [
    "FileReport",
    "IngestReport",
    "ParsedFile",
    "expand_paths",
    "in_namespace",
    "ingest_paths",
    "locate_error",
    "parse_bundle",
    "parse_fhir_resources",
    "parse_json_text",
    "parse_file",
    "parse_ndjson",
    "parse_path",
]
