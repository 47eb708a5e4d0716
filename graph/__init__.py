"""Patient knowledge graphs: schema, record parsers, stores, queries and exports.

    from graph import open_store, ingest_paths, timeline, cohort, HasCondition, LabValue

    with open_store("sqlite:///twin-data/twin.db") as store:
        ingest_paths(store, ["records/"])
        ids = cohort(store, HasCondition("44054006") & LabValue("4548-4", ">", 7))
        events = timeline(store, ids[0])

Callers outside ``graph`` import from here only; the submodules are the package's inside.
"""

from graph.display import display_unit, name_with_code
from graph.export import deidentify, node_document, strip_paths, to_hetero_data, to_networkx, to_node_link
from graph.export_meds import MedsExport, write_meds
from graph.ingest import (
    FileReport,
    IngestReport,
    ParsedFile,
    in_namespace,
    ingest_paths,
    locate_error,
    parse_bundle,
    parse_file,
    parse_json_text,
    parse_ndjson,
    parse_path,
)
from graph.predicates import (
    MAX_PREDICATE_DEPTH,
    MAX_PREDICATE_TERMS,
    CarriesVariant,
    HasCondition,
    LabValue,
    OnMedication,
    Predicate,
    predicate_from_dict,
    predicate_from_json,
)
from graph.query import Subgraph, cohort, find_nodes, neighbourhood, patient_graph, read_cypher, timeline
from graph.schema import EDGE_TYPES, Edge, GraphBatch, Node, NodeType, Rel
from graph.store import DEFAULT_STORE_URL, GraphStore, NodeQuery, StoreCounts, WriteStats, open_store, resolve_store_url
from graph.store.transfer import CopyReport, copy_store
from graph.timeutil import days_between, parse_fhir_time
from graph.units import convert_dose, dose_quantity

__all__ = [
    "CarriesVariant",
    "CopyReport",
    "DEFAULT_STORE_URL",
    "EDGE_TYPES",
    "Edge",
    "FileReport",
    "GraphBatch",
    "GraphStore",
    "HasCondition",
    "IngestReport",
    "LabValue",
    "MAX_PREDICATE_DEPTH",
    "MAX_PREDICATE_TERMS",
    "MedsExport",
    "Node",
    "NodeQuery",
    "NodeType",
    "OnMedication",
    "ParsedFile",
    "Predicate",
    "Rel",
    "StoreCounts",
    "Subgraph",
    "WriteStats",
    "cohort",
    "convert_dose",
    "copy_store",
    "days_between",
    "deidentify",
    "display_unit",
    "dose_quantity",
    "find_nodes",
    "in_namespace",
    "ingest_paths",
    "locate_error",
    "name_with_code",
    "neighbourhood",
    "node_document",
    "open_store",
    "parse_bundle",
    "parse_fhir_time",
    "parse_file",
    "parse_json_text",
    "parse_ndjson",
    "parse_path",
    "patient_graph",
    "predicate_from_dict",
    "predicate_from_json",
    "read_cypher",
    "resolve_store_url",
    "strip_paths",
    "timeline",
    "to_hetero_data",
    "to_networkx",
    "to_node_link",
    "write_meds",
]
