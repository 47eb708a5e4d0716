"""Exports of a :class:`~graph.query.Subgraph`: networkx, node-link JSON and PyG ``HeteroData``.

The ``HeteroData`` export is structural (ids, times, values, typed edge indices); the model
builds its own feature tensors in :mod:`twin.features`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import networkx as nx

from graph.query import Subgraph
from graph.schema import Node
from graph.store.codec import edge_to_record, node_to_record

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

__all__ = ["deidentify", "node_document", "to_hetero_data", "to_networkx", "to_node_link"]


def node_document(n: Node) -> dict[str, Any]:
    """A node as a JSON-ready document (schema fields, times as ISO UTC, ``props`` as a mapping)."""
    rec = node_to_record(n)
    rec["props"] = dict(n.props)
    return rec


def _node_attrs(n: Node) -> dict[str, Any]:
    return {k: v for k, v in node_document(n).items() if k != "id"}


def to_networkx(g: Subgraph) -> nx.MultiDiGraph:
    """A ``MultiDiGraph`` with node attributes from the schema and ``rel`` on each edge."""
    out = nx.MultiDiGraph()
    for n in g.nodes:
        out.add_node(n.id, **_node_attrs(n))
    for e in g.edges:
        out.add_edge(e.src, e.dst, key=e.rel.value, rel=e.rel.value, **dict(e.props))
    return out


def to_node_link(g: Subgraph) -> dict[str, Any]:
    """JSON-ready node-link document: ``{"nodes": [...], "links": [...]}`` (times as ISO UTC)."""
    nodes = [{"id": n.id, **_node_attrs(n)} for n in g.nodes]
    links = []
    for e in g.edges:
        rec = edge_to_record(e)
        rec["props"] = dict(e.props)
        links.append({"source": rec.pop("src"), "target": rec.pop("dst"), **rec})
    return {"directed": True, "multigraph": True, "nodes": nodes, "links": links}


def to_hetero_data(g: Subgraph) -> HeteroData:
    """PyG ``HeteroData``: per node type ``ids``, ``time`` (epoch seconds, NaN if timeless) and
    ``value`` (NaN if none); per ``(src type, rel, dst type)`` an ``edge_index``."""
    import torch
    from torch_geometric.data import HeteroData

    data = HeteroData()
    index: dict[str, tuple[str, int]] = {}
    by_type: dict[str, list[Any]] = {}
    for n in g.nodes:
        by_type.setdefault(n.type.value, []).append(n)
    for t, nodes in by_type.items():
        for i, n in enumerate(nodes):
            index[n.id] = (t, i)
        data[t].ids = [n.id for n in nodes]
        data[t].num_nodes = len(nodes)
        data[t].time = torch.tensor([n.time.timestamp() if n.time else float("nan") for n in nodes], dtype=torch.float64)
        data[t].value = torch.tensor([n.value if n.value is not None else float("nan") for n in nodes], dtype=torch.float32)
    pairs: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    for e in g.edges:
        (st, si), (dt, di) = index[e.src], index[e.dst]
        pairs.setdefault((st, e.rel.value, dt), []).append((si, di))
    for key, ij in pairs.items():
        data[key].edge_index = torch.tensor(ij, dtype=torch.long).t().contiguous()
    return data


#: Property keys that may carry direct identifiers or free text; dropped by :func:`deidentify`.
_IDENTIFYING_PROPS = frozenset({"name", "address", "telecom", "identifier", "text", "note", "file", "birth_date"})


def deidentify(g: Subgraph, *, salt: str) -> Subgraph:
    """A copy safe to share: patient ids replaced by salted hashes, identifying props dropped,
    birth dates reduced to the year, source provenance removed."""
    import hashlib
    from dataclasses import replace

    from graph.schema import Edge

    def pid(p: str | None) -> str | None:
        return None if p is None else hashlib.sha256(f"{salt}|{p}".encode()).hexdigest()[:16]

    def nid(i: str) -> str:
        return i if i.startswith(("Concept/", "Gene/")) else "n" + hashlib.sha256(f"{salt}|{i}".encode()).hexdigest()[:20]

    nodes: list[Node] = []
    for n in g.nodes:
        props = {k: v for k, v in n.props.items() if k not in _IDENTIFYING_PROPS}
        if "birth_date" in n.props and n.props["birth_date"]:
            props["birth_year"] = str(n.props["birth_date"])[:4]
        nodes.append(replace(n, id=nid(n.id), patient_id=pid(n.patient_id), props=props, source=None))
    edges = [Edge(src=nid(e.src), rel=e.rel, dst=nid(e.dst), patient_id=pid(e.patient_id), props=dict(e.props)) for e in g.edges]
    return Subgraph(nodes=nodes, edges=edges)
