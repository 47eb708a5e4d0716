"""Feature building from a patient's as-of graph: HeteroData, labels and treatment inputs."""

from twin.features.batch import Example, ExampleBatch, build_example, collate
from twin.features.hetero import FeatureSpec, build_graph, drop_modalities, edge_types, node_dims, time_encoding
from twin.features.records import PatientRecords, daily_dose, image_path, load_records
from twin.features.targets import Targets, build_targets, change_origins, choose_origins
from twin.features.treatment import DoseAction, actions_from_records, dose_schedule

__all__ = [
    "DoseAction",
    "Example",
    "ExampleBatch",
    "FeatureSpec",
    "PatientRecords",
    "Targets",
    "actions_from_records",
    "build_example",
    "build_graph",
    "build_targets",
    "change_origins",
    "choose_origins",
    "collate",
    "daily_dose",
    "dose_schedule",
    "drop_modalities",
    "edge_types",
    "image_path",
    "load_records",
    "node_dims",
    "time_encoding",
]
