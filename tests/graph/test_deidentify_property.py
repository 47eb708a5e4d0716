"""Property test of :func:`graph.export.deidentify`: random patient subgraphs with ids, names and
dates planted in every field and property (file paths included); after de-identification no
original id, name or date string survives anywhere in the node-link export."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph.export import deidentify, strip_paths, to_node_link
from graph.query import Subgraph
from graph.schema import Edge, Node, NodeType, Rel, concept_id

LOINC = "http://loinc.org"

ids = st.builds(lambda a, b: f"pt-{a}{b}", st.text(string.ascii_lowercase, min_size=3, max_size=6),
                st.text(string.digits, min_size=1, max_size=4))
#: Name words start with a capital Q: they cannot occur in the export's own vocabulary.
words = st.builds(lambda w: "Q" + w, st.text(string.ascii_lowercase, min_size=3, max_size=8))
times = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)).map(lambda t: t.replace(tzinfo=UTC))


@st.composite
def patient(draw: st.DrawFn) -> dict:
    pid = draw(ids)
    given, family = draw(words), draw(words)
    born = draw(times)
    events = draw(st.lists(st.tuples(times, st.integers(0, 400), st.floats(1, 500)), min_size=1, max_size=5))
    birth_form = draw(st.sampled_from(["date", "year", "month"]))
    return {"pid": pid, "given": given, "family": family, "born": born, "events": events, "birth_form": birth_form,
            "mrn": draw(st.text(string.digits, min_size=6, max_size=9))}


def _build(patients: list[dict], as_of: datetime | None) -> tuple[Subgraph, set[str]]:
    """The subgraph and every original string that must not survive."""
    nodes: list[Node] = [Node(id=concept_id(LOINC, "2339-0"), type=NodeType.CONCEPT, code="2339-0", system=LOINC,
                              display="Glucose")]
    edges: list[Edge] = []
    secrets: set[str] = set()
    for p in patients:
        pid, name = p["pid"], f"{p['given']} {p['family']}"
        day = p["born"].date().isoformat()
        birth = {"date": day, "year": day[:4], "month": day[:7]}[p["birth_form"]]
        pnode = f"Patient/{pid}"
        nodes.append(Node(id=pnode, type=NodeType.PATIENT, patient_id=pid, source=f"fhir:Patient/{pid}",
                          props={"name": name, "identifier": [{"system": "urn:mrn", "value": p["mrn"]}],
                                 "birth_date": birth, "birth_year": p["born"].year, "sex": "female",
                                 "address": {"line": [f"{p['family']} Street 1"], "city": "Qville"}}))
        secrets |= {pid, pnode, p["given"], p["family"], name, p["mrn"], f"fhir:Patient/{pid}"}
        if p["birth_form"] == "date":
            secrets.add(day)
        for i, (when, dur, value) in enumerate(p["events"]):
            rid = f"{pid}-obs-{i}"
            stamp = when.date().isoformat()
            end = when + timedelta(days=dur)
            lab = Node(id=f"Observation/{rid}", type=NodeType.LAB, patient_id=pid, time=when, end=end, code="2339-0",
                       system=LOINC, display=f"Glucose for {p['family']} on {stamp}", value=value, unit="mg/dL",
                       source=f"fhir:Observation/{rid}",
                       props={"status": "final", "recorded": when.isoformat(), "performer": f"Dr for {name}",
                              "note": f"{p['given']} fasting since {stamp}",
                              "history": [{"when": stamp, "who": p["given"], "ref": f"Observation/{rid}"}],
                              "value_string": f"{value} for {pid}"})
            img_path = f"/srv/uploads/{p['family']}/{pid}_{stamp}_{i}.npy"
            img = Node(id=f"ImagingStudy/{rid}-img", type=NodeType.IMAGE, patient_id=pid, time=when,
                       props={"file": f"../images/{pid}_{stamp}_{i}.npy", "file_path": img_path,
                              "files": [f"../images/{pid}_{stamp}_{i}.npy", f"{p['given']}_{i}.dcm"],
                              "modality": ["US"], "caption": f"{p['family']} kidney {stamp}"})
            nodes += [lab, img]
            edges += [Edge(pnode, Rel.HAS_LAB, lab.id, pid, props={"noted": stamp}),
                      Edge(lab.id, Rel.CODED_AS, concept_id(LOINC, "2339-0"), pid),
                      Edge(pnode, Rel.HAS_IMAGE, img.id, pid)]
            secrets |= {rid, lab.id, img.id, f"{rid}-img", stamp, end.date().isoformat(), img_path,
                        f"../images/{pid}_{stamp}_{i}.npy", f"{pid}_{stamp}_{i}.npy", "/srv/uploads"}
    if as_of is not None:
        secrets.add(as_of.date().isoformat())
    return Subgraph(nodes=nodes, edges=edges, as_of=as_of), secrets


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(patient(), min_size=1, max_size=3, unique_by=lambda p: p["pid"]),
       st.one_of(st.none(), times), st.text(min_size=1, max_size=12))
def test_no_original_id_name_or_date_survives(patients: list[dict], as_of: datetime | None, salt: str) -> None:
    g, secrets = _build(patients, as_of)
    out = deidentify(g, salt=salt)
    text = json.dumps(to_node_link(out), sort_keys=True, default=str)
    if out.as_of is not None:
        text += out.as_of.isoformat()
    leaked = sorted(s for s in secrets if s in text)
    assert not leaked, leaked

    # the export is still a graph: same shape, edges between its nodes, one offset per patient
    assert len(out.nodes) == len(g.nodes) and len(out.edges) == len(g.edges)
    node_ids = {n.id for n in out.nodes}
    assert all(e.src in node_ids and e.dst in node_ids for e in out.edges)
    shifts: dict[str | None, set[timedelta]] = {}
    for n, m in zip(g.nodes, out.nodes, strict=True):
        for a, b in ((n.time, m.time), (n.end, m.end)):
            if a is not None:
                assert b is not None
                shifts.setdefault(n.patient_id, set()).add(b - a)
    assert all(len(s) == 1 and next(iter(s)).days != 0 for s in shifts.values())
    assert deidentify(g, salt=salt) == out  # deterministic for a salt


def test_strip_paths_keeps_base_names_only() -> None:
    n = Node(id="ImagingStudy/x", type=NodeType.IMAGE, patient_id="p",
             props={"file": "/srv/up/abc.npy", "file_path": "/srv/up/abc.npy", "files": ["../i/a.npy", "C:\\d\\b.dcm"],
                    "modality": ["US"]})
    assert strip_paths(n).props == {"file": "abc.npy", "files": ["a.npy", "b.dcm"], "modality": ["US"]}
    plain = Node(id="Observation/x", type=NodeType.LAB, patient_id="p")
    assert strip_paths(plain) is plain
