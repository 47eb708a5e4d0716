"""Sample graphs with known contents, shared by the store contract and Neo4j tests."""

from __future__ import annotations

from datetime import UTC, datetime

from graph.schema import Edge, GraphBatch, Node, NodeType, Rel, concept_id, gene_id

LOINC, SCT, RX = "http://loinc.org", "http://snomed.info/sct", "http://www.nlm.nih.gov/research/umls/rxnorm"
GLUCOSE, DIABETES, METFORMIN = "2339-0", "44054006", "860975"


def t(y: int, m: int = 1, d: int = 1) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def every_type_batch() -> GraphBatch:
    """One node of every type, each field used somewhere, and an edge of every kind."""
    p = "Patient/p1"
    enc, lab, cond, med = "Encounter/e1", "Observation/l1", "Condition/c1", "MedicationRequest/m1"
    proc, img, var = "Procedure/x1", "ImagingStudy/i1", "Observation/v1"
    nodes = [
        Node(p, NodeType.PATIENT, patient_id="p1", props={"sex": "female", "birth_date": "1950-02-03"}, source="b.json"),
        Node(enc, NodeType.ENCOUNTER, patient_id="p1", time=t(2019, 1, 5), end=t(2019, 1, 6), code="AMB",
             system="http://terminology.hl7.org/CodeSystem/v3-ActCode", props={"class": "AMB"}),
        Node(lab, NodeType.LAB, patient_id="p1", time=t(2019, 1, 5), code=GLUCOSE, system=LOINC, display="Glucose",
             value=101.5, unit="mg/dL", props={"reference_range": [70, 99], "interpretation": "H", "nested": {"a": None}}),
        Node(cond, NodeType.CONDITION, patient_id="p1", time=t(2018, 3, 1), end=t(2019, 12, 1), code=DIABETES,
             system=SCT, props={"status": "resolved"}),
        Node(med, NodeType.MEDICATION, patient_id="p1", time=t(2019, 2, 1), code=METFORMIN, system=RX, value=500.0,
             unit="mg", props={"route": "oral", "frequency_per_day": 2}),
        Node(proc, NodeType.PROCEDURE, patient_id="p1", time=t(2019, 1, 5), code="430193006", system=SCT),
        Node(img, NodeType.IMAGE, patient_id="p1", time=t(2019, 1, 5), code="CT", props={"file": "ct.npy", "embedding": [0.25, -1.5]}),
        Node(var, NodeType.VARIANT, patient_id="p1", props={"hgvs": "c.1A>G", "zygosity": "het", "gene": "SLC22A1"}),
        Node(gene_id("SLC22A1"), NodeType.GENE, code="SLC22A1", display="ünïcode ✓ \"quoted\" 'gene'"),
        Node(concept_id(LOINC, GLUCOSE), NodeType.CONCEPT, code=GLUCOSE, system=LOINC),
    ]
    edges = [
        Edge(p, Rel.HAS_ENCOUNTER, enc, "p1"), Edge(p, Rel.HAS_LAB, lab, "p1", {"order": 1}),
        Edge(p, Rel.HAS_CONDITION, cond, "p1"), Edge(p, Rel.HAS_MEDICATION, med, "p1"),
        Edge(p, Rel.HAS_PROCEDURE, proc, "p1"), Edge(p, Rel.HAS_IMAGE, img, "p1"),
        Edge(lab, Rel.RECORDED_IN, enc, "p1"), Edge(lab, Rel.CODED_AS, concept_id(LOINC, GLUCOSE), "p1"),
        Edge(med, Rel.TREATS, cond, "p1"), Edge(p, Rel.CARRIES, var, "p1"), Edge(var, Rel.IN_GENE, gene_id("SLC22A1"), "p1"),
    ]
    return GraphBatch(nodes=nodes, edges=edges)


def cohort_batch(pid: str, glucose: list[tuple[datetime, float]], cond: str | None,
                 med: tuple[datetime, datetime | None] | None, gene: str | None) -> GraphBatch:
    b = GraphBatch()
    p = f"Patient/{pid}"
    b.nodes.append(Node(p, NodeType.PATIENT, patient_id=pid))
    for i, (when, v) in enumerate(glucose):
        lid = f"Observation/{pid}-g{i}"
        b.nodes.append(Node(lid, NodeType.LAB, patient_id=pid, time=when, code=GLUCOSE, system=LOINC, value=v, unit="mg/dL"))
        b.edges += [Edge(p, Rel.HAS_LAB, lid, pid), Edge(lid, Rel.CODED_AS, concept_id(LOINC, GLUCOSE), pid)]
    b.nodes.append(Node(concept_id(LOINC, GLUCOSE), NodeType.CONCEPT, code=GLUCOSE, system=LOINC))
    if cond:
        cid = f"Condition/{pid}-c"
        b.nodes.append(Node(cid, NodeType.CONDITION, patient_id=pid, time=t(2018), code=cond, system=SCT))
        b.edges.append(Edge(p, Rel.HAS_CONDITION, cid, pid))
    if med:
        mid = f"MedicationRequest/{pid}-m"
        b.nodes.append(Node(mid, NodeType.MEDICATION, patient_id=pid, time=med[0], end=med[1], code=METFORMIN, system=RX))
        b.edges.append(Edge(p, Rel.HAS_MEDICATION, mid, pid))
    if gene:
        vid = f"Observation/{pid}-v"
        b.nodes += [Node(vid, NodeType.VARIANT, patient_id=pid, props={"gene": gene}), Node(gene_id(gene), NodeType.GENE, code=gene)]
        b.edges += [Edge(p, Rel.CARRIES, vid, pid), Edge(vid, Rel.IN_GENE, gene_id(gene), pid)]
    return b
