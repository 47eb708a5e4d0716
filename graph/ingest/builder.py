"""Accumulates the nodes and edges of one file into a :class:`~graph.schema.GraphBatch`.

Every parser (FHIR, Synthea CSV, VCF, images) adds events through :class:`BatchBuilder`, so
the linking rules live in one place: ``Patient -HAS_*-> event``, ``event -RECORDED_IN->
Encounter``, ``event -CODED_AS-> Concept`` (one shared Concept node per ``system|code``),
``Patient -CARRIES-> Variant -IN_GENE-> Gene``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from graph.schema import Edge, GraphBatch, Node, NodeType, Rel, concept_id, gene_id, has_edge_for

__all__ = ["BatchBuilder", "ParsedFile"]


@dataclass
class ParsedFile:
    """One parsed file (or Synthea CSV export): its batch and what was seen/skipped.

    ``resources`` counts every resource (or row) by type; ``skipped`` counts those that became
    no node, keyed by type plus the reason in parentheses where there is one
    (``"Claim"``, ``"Observation(no patient)"``).
    """

    source: str
    format: str
    batch: GraphBatch
    resources: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def nodes_by_type(self) -> dict[str, int]:
        return dict(sorted(Counter(n.type.value for n in self.batch.nodes).items()))


class BatchBuilder:
    """Collects nodes (last write of an id wins) and edges (deduplicated by key)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.edges: dict[tuple[str, str, str], Edge] = {}

    def add(self, node: Node) -> None:
        self.nodes[node.id] = node

    def link(self, src: str, rel: Rel, dst: str, patient_id: str | None) -> None:
        e = Edge(src=src, rel=rel, dst=dst, patient_id=patient_id)
        self.edges[e.key] = e

    def concept(self, system: str | None, code: str | None, display: str | None) -> str | None:
        """Id of the shared Concept node for ``system|code`` (created on first use)."""
        if not code:
            return None
        cid = concept_id(system, code)
        if cid not in self.nodes:
            self.nodes[cid] = Node(id=cid, type=NodeType.CONCEPT, code=code, system=system, display=display,
                                   source=f"concept:{system or ''}|{code}")
        return cid

    def event(self, node: Node, *, encounter_id: str | None = None) -> None:
        """Add an event/encounter node owned by ``node.patient_id`` with its standard edges."""
        pid = node.patient_id
        if pid is None:  # parsers skip patient-less resources before they get here
            raise ValueError(f"event node {node.id} has no patient_id")
        self.add(node)
        self.link(f"Patient/{pid}", has_edge_for(node.type), node.id, pid)
        if encounter_id and node.type is not NodeType.ENCOUNTER:
            self.link(node.id, Rel.RECORDED_IN, encounter_id, pid)
        cid = self.concept(node.system, node.code, node.display)
        if cid:
            self.link(node.id, Rel.CODED_AS, cid, pid)

    def variant(self, node: Node, gene: str | None) -> None:
        """Add a Variant carried by ``node.patient_id``, linked to its Gene when known."""
        pid = node.patient_id
        if pid is None:
            raise ValueError(f"variant node {node.id} has no patient_id")
        self.add(node)
        self.link(f"Patient/{pid}", Rel.CARRIES, node.id, pid)
        if gene:
            gid = gene_id(gene)
            if gid not in self.nodes:
                self.nodes[gid] = Node(id=gid, type=NodeType.GENE, code=gene.upper(), display=gene,
                                       source=f"gene:{gene.upper()}")
            self.link(node.id, Rel.IN_GENE, gid, pid)

    def batch(self) -> GraphBatch:
        return GraphBatch(nodes=list(self.nodes.values()), edges=list(self.edges.values()))
