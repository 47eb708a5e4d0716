"""A tiny cohort written straight into a real store, for fast tests of the twin's model.

Each patient has one lab ``T1`` whose level drifts with a patient-specific slope (shown by
the patient's image brightness) and falls while on drug ``D1`` (less so for carriers of a
variant in gene ``GX``), a second lab ``T2`` tracking ``T1``, and inpatient encounters more
likely when ``T1`` is high. Codes are made up on purpose: the model must take its vocabulary
from the data.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from graph.schema import Edge, GraphBatch, Node, NodeType, Rel, concept_id, gene_id
from graph.store.base import GraphStore

START = datetime(2020, 1, 1, tzinfo=UTC)
SYS = "urn:test"


def level(g0: float, slope: float, day: float, drug_days: float, carrier: bool) -> float:
    """Noise-free T1 at ``day`` after ``drug_days`` days on D1."""
    effect = (0.6 if carrier else 1.5) * (1 - np.exp(-max(drug_days, 0.0) / 20.0))
    return g0 + slope * day / 365.0 - effect


def write_toy_cohort(store: GraphStore, n: int, seed: int, image_dir: Path | None = None,
                     days: int = 900) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        pid = f"toy{i}"
        g0, slope = rng.normal(7.0, 0.8), rng.normal(0.0, 1.0)
        carrier = bool(rng.random() < 0.4)
        drug_start = float(rng.uniform(150, 600)) if rng.random() < 0.7 else None
        nodes = [Node(id=f"Patient/{pid}", type=NodeType.PATIENT, patient_id=pid,
                      props={"birth_date": f"{int(rng.integers(1940, 1990))}-01-01",
                             "sex": "female" if rng.random() < 0.5 else "male"})]
        edges: list[Edge] = []

        def add(node: Node, rel: Rel, nodes: list[Node] = nodes, edges: list[Edge] = edges, pid: str = pid) -> None:
            nodes.append(node)
            edges.append(Edge(f"Patient/{pid}", rel, node.id, patient_id=pid))

        day = float(rng.uniform(0, 30))
        k = 0
        while day < days:
            t = START + timedelta(days=day)
            on = (day - drug_start) if drug_start is not None and day >= drug_start else 0.0
            v = level(g0, slope, day, on, carrier)
            for code, val in (("T1", v + rng.normal(0, 0.15)), ("T2", 2.0 * v + 3 + rng.normal(0, 0.3)),
                              ("N9", rng.normal(1, 0.1))):
                add(Node(id=f"Observation/{pid}-{code}-{k}", type=NodeType.LAB, patient_id=pid, time=t, code=code,
                         system=SYS, value=round(float(val), 3), unit="1"), Rel.HAS_LAB)
            if rng.random() < 0.03 * max(v - 6.0, 0.2):
                add(Node(id=f"Encounter/{pid}-h{k}", type=NodeType.ENCOUNTER, patient_id=pid, time=t,
                         end=t + timedelta(days=3), code="IMPX", system=SYS, props={"class": "IMP"}),
                    Rel.HAS_ENCOUNTER)
            k += 1
            day += float(rng.uniform(25, 70))
        if drug_start is not None:
            add(Node(id=f"MedicationRequest/{pid}-d1", type=NodeType.MEDICATION, patient_id=pid,
                     time=START + timedelta(days=drug_start), code="D1", system=SYS, value=1000.0, unit="mg"),
                Rel.HAS_MEDICATION)
        add(Node(id=f"Condition/{pid}-c", type=NodeType.CONDITION, patient_id=pid, time=START, code="C1",
                 system=SYS), Rel.HAS_CONDITION)
        if image_dir is not None and rng.random() < 0.8:
            image_dir.mkdir(parents=True, exist_ok=True)
            f = image_dir / f"{pid}.npy"
            img = rng.normal(0, 0.2, (24, 24)) + slope
            img[8:16, 8:16] += 2.0 * slope
            np.save(f, img.astype(np.float32))
            add(Node(id=f"Media/{pid}-img", type=NodeType.IMAGE, patient_id=pid, time=START + timedelta(days=5),
                     code="US", system=SYS, props={"file": f.name, "file_path": str(f)}), Rel.HAS_IMAGE)
        if carrier:
            var = Node(id=f"Observation/{pid}-var", type=NodeType.VARIANT, patient_id=pid, code="rs1",
                       system=SYS, props={"zygosity": "heterozygous", "significance": "risk factor"})
            nodes.append(var)
            edges.append(Edge(f"Patient/{pid}", Rel.CARRIES, var.id, patient_id=pid))
            nodes.append(Node(id=gene_id("GX"), type=NodeType.GENE, code="GX"))
            edges.append(Edge(var.id, Rel.IN_GENE, gene_id("GX"), patient_id=pid))
        concepts = {concept_id(n.system, n.code): n for n in nodes if n.code and n.type is not NodeType.GENE}
        for cid, n in concepts.items():
            nodes.append(Node(id=cid, type=NodeType.CONCEPT, code=n.code, system=n.system))
        store.write(GraphBatch(nodes=nodes, edges=edges))
