"""Patient knowledge graphs: schema, record parsers, stores, queries and exports."""

from graph.errors import QueryError, RecordError, StoreError, TwinError
from graph.schema import EDGE_TYPES, Edge, GraphBatch, Node, NodeType, Rel

__all__ = ["EDGE_TYPES", "Edge", "GraphBatch", "Node", "NodeType", "QueryError", "RecordError", "Rel", "StoreError", "TwinError"]
