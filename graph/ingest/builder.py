"""Accumulates the nodes and edges of one file into a :class:`~graph.schema.GraphBatch`.

Every parser (FHIR, Synthea CSV, VCF, images) adds events through :class:`BatchBuilder`, so
the linking rules live in one place: ``Patient -HAS_*-> event``, ``event -RECORDED_IN->
Encounter``, ``event -CODED_AS-> Concept`` (one shared Concept node per ``system|code``),
``Patient -CARRIES-> Variant -IN_GENE-> Gene``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace

from core.errors import ConflictError, RecordError
from graph.schema import Edge, GraphBatch, Node, NodeType, Rel, concept_id, gene_id, has_edge_for

__all__ = ["BatchBuilder", "Origin", "ParsedFile", "in_namespace", "locate_error"]


#: Where a node came from: the resource (or row) label and the field naming its patient.
Origin = tuple[str | None, str | None]


@dataclass
class ParsedFile:
    """One parsed file (or Synthea CSV export): its batch and what was seen/skipped.

    ``resources`` counts every resource (or row) by type; ``skipped`` counts those that became
    no node, keyed by type plus the reason in parentheses where there is one
    (``"Claim"``, ``"Observation(cancelled)"``); every other resource is :attr:`stored`.
    ``origins`` maps node ids to the resource and patient field they came from, so that a
    store's refusal can name the record (:meth:`locate`).
    """

    source: str
    format: str
    batch: GraphBatch
    resources: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    origins: dict[str, Origin] = field(default_factory=dict)

    def nodes_by_type(self) -> dict[str, int]:
        return dict(sorted(Counter(n.type.value for n in self.batch.nodes).items()))

    @property
    def stored(self) -> int:
        """Resources that became graph nodes (read minus skipped)."""
        return sum(self.resources.values()) - sum(self.skipped.values())

    def locate(self, exc: RecordError) -> RecordError | None:
        """``exc`` (raised by a store for one of this file's nodes) naming the source record:
        this file, the resource or row, and the patient field for an unknown patient.
        ``None`` when the error is not about a node of this file."""
        if exc.resource is None or exc.resource not in self.origins:
            return None
        label, patient_field = self.origins[exc.resource]
        fld = patient_field if exc.field == "patient_id" and patient_field else exc.field
        return type(exc)(exc.reason, file=exc.file or self.source, resource=label or exc.resource, field=fld)


_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
_SHARED_PREFIXES = ("Concept/", "Gene/")


def in_namespace(parsed: ParsedFile, namespace: str | None) -> ParsedFile:
    """``parsed`` with every source id moved into the id space of source system ``namespace``.

    Patient ids become ``"{namespace}:{id}"`` and every patient-scoped node id
    ``"{Type}/{namespace}:{rest}"`` (edge endpoints outside the file too); the shared vocabulary
    (``Concept``, ``Gene``) is left as is. ``:`` cannot occur in a FHIR id, so records of two
    source systems that reuse ids (``Patient/123`` in both) stay apart. ``None``: unchanged.
    """
    if namespace is None:
        return parsed
    if not _NAMESPACE.fullmatch(namespace):
        raise RecordError("a namespace is 1-32 letters, digits and '-', starting with a letter or digit",
                          field="namespace")

    def nid(i: str) -> str:
        if i.startswith(_SHARED_PREFIXES) or "/" not in i:
            return i
        kind, rest = i.split("/", 1)
        return f"{kind}/{namespace}:{rest}"

    def pid(p: str | None) -> str | None:
        return None if p is None else f"{namespace}:{p}"

    nodes = [n if n.patient_id is None else dc_replace(n, id=nid(n.id), patient_id=pid(n.patient_id))
             for n in parsed.batch.nodes]
    edges = [dc_replace(e, src=nid(e.src), dst=nid(e.dst), patient_id=pid(e.patient_id)) for e in parsed.batch.edges]
    origins = {nid(i): o for i, o in parsed.origins.items()}
    return dc_replace(parsed, batch=GraphBatch(nodes=nodes, edges=edges), origins=origins)


def locate_error(exc: RecordError, parsed: Sequence[ParsedFile]) -> RecordError:
    """A store's :class:`RecordError` about a batch written from ``parsed``, located in its
    source record (see :meth:`ParsedFile.locate`); ``exc`` itself when no file holds the node."""
    for p in parsed:
        located = p.locate(exc)
        if located is not None:
            return located
    return exc


class BatchBuilder:
    """Collects nodes (last write of an id wins, for the same patient) and edges (deduplicated by key).

    Parsers set :attr:`origin` before adding a record's nodes; each node remembers it.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.edges: dict[tuple[str, str, str], Edge] = {}
        self.origin: Origin | None = None
        self.origins: dict[str, Origin] = {}

    def add(self, node: Node) -> None:
        """Add ``node``; an id already given to another patient in this file is a conflict."""
        old = self.nodes.get(node.id)
        if old is not None and old.patient_id != node.patient_id:
            where = self.origin[0] if self.origin and self.origin[0] else node.id
            raise ConflictError(f"{node.id} is given to two different patients in one file", resource=where)
        self.nodes[node.id] = node
        if self.origin is not None:
            self.origins[node.id] = self.origin

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
