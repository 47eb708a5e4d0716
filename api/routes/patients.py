"""``GET /v1/patients/{id}`` (summary), ``/timeline``, ``/graph?as_of=`` (node-link export) and
``/images/{node id}`` (a PNG preview of an image whose pixels this server holds).

Each read is audit-logged (``patient.read``, ``patient.timeline``, ``patient.graph``). No
answer names a file on the server: image nodes show their file's base name only
(:func:`graph.strip_paths`); ``deidentify=true`` applies :func:`graph.deidentify` (ids hashed,
identifying and free-text properties dropped, dates shifted per patient) and then also answers
with the hashed patient id and the shifted ``as_of``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from api.deps import ExistingPatient, SettingsDep, StoreDep, audited, require_scope
from api.errors import ProblemError
from api.openapi import problems
from api.schemas import AsOf, GraphOut, NodeOut, PatientSummary, TimelineOut, edge_out, node_out
from api.thumbnails import has_pixels, thumbnail_png
from graph import Node, NodeType, patient_graph, strip_paths, timeline
from graph import deidentify as deidentify_graph

__all__ = ["router"]

router = APIRouter(prefix="/v1/patients", tags=["patients"])

_READ = Depends(require_scope("graph:read"))


def _out(n: Node, upload_dir: Path) -> NodeOut:
    out = node_out(strip_paths(n))
    if n.type is NodeType.IMAGE:
        out.pixels = has_pixels(n, upload_dir)
    return out


AsOfQuery = Annotated[AsOf | None, Query(description="See the graph as known at this time (ISO 8601; naive = UTC).")]


@router.get(
    "/{patient_id}",
    response_model=PatientSummary,
    summary="A patient's demographics, record counts by type and time span.",
    dependencies=[Depends(audited("patient.read")), _READ],
    responses=problems(404),
)
def get_patient(patient_id: ExistingPatient, store: StoreDep, settings: SettingsDep,
                as_of: AsOfQuery = None) -> PatientSummary:
    g = patient_graph(store, patient_id, as_of=as_of)
    own = [n for n in g.nodes if n.patient_id == patient_id]
    patient = next((n for n in own if n.type is NodeType.PATIENT), None)
    times = [n.time for n in own if n.time is not None]
    return PatientSummary(
        patient_id=patient_id,
        as_of=as_of,
        patient=_out(patient, settings.upload_dir) if patient else None,
        counts={t: c for t, c in g.counts().items() if t not in ("Concept", "Gene")},
        first_record=min(times, default=None),
        last_record=max(times, default=None),
    )


@router.get(
    "/{patient_id}/timeline",
    response_model=TimelineOut,
    summary="A patient's time-stamped records in time order.",
    dependencies=[Depends(audited("patient.timeline")), _READ],
    responses=problems(404),
)
def get_timeline(
    patient_id: ExistingPatient,
    store: StoreDep,
    settings: SettingsDep,
    as_of: AsOfQuery = None,
    types: Annotated[list[NodeType] | None, Query(alias="type", description="Only these node types.")] = None,
    start: Annotated[AsOf | None, Query(description="Window start (inclusive).")] = None,
    end: Annotated[AsOf | None, Query(description="Window end (inclusive).")] = None,
) -> TimelineOut:
    nodes = timeline(store, patient_id, as_of=as_of, types=types, start=start, end=end)
    return TimelineOut(patient_id=patient_id, as_of=as_of, count=len(nodes),
                       nodes=[_out(n, settings.upload_dir) for n in nodes])


@router.get(
    "/{patient_id}/graph",
    response_model=GraphOut,
    summary="A patient's graph as of a time (node-link), optionally de-identified.",
    dependencies=[Depends(audited("patient.graph")), _READ],
    responses=problems(404, 409),
)
def get_graph(
    patient_id: ExistingPatient,
    store: StoreDep,
    settings: SettingsDep,
    as_of: AsOfQuery = None,
    deidentify: Annotated[bool, Query(description="Hash ids, drop identifying and free-text properties, shift dates "
                                                  "per patient (see graph.deidentify).")] = False,
) -> GraphOut:
    g = patient_graph(store, patient_id, as_of=as_of)
    shown = patient_id
    if deidentify:
        if settings.deid_salt is None:
            raise ProblemError(409, "de-identified export needs TWIN_DEID_SALT to be configured", kind="not-configured")
        g = deidentify_graph(g, salt=settings.deid_salt.get_secret_value())
        # the patient's pseudonym (every own node carries it; patient_graph returns at least one)
        shown = next(n.patient_id for n in g.nodes if n.patient_id)
    return GraphOut(
        patient_id=shown,
        as_of=g.as_of,
        deidentified=deidentify,
        counts=g.counts(),
        nodes=[_out(n, settings.upload_dir) for n in g.nodes],
        links=[edge_out(e) for e in g.edges],
    )


@router.get(
    "/{patient_id}/images/{image_id:path}",
    response_class=Response,
    summary="A small grey-scale PNG preview of one of the patient's images (when this server holds its pixels).",
    dependencies=[Depends(audited("patient.image")), _READ],
    responses={**problems(404, 422), 200: {"content": {"image/png": {}}, "description": "The preview."}},
)
def get_image(patient_id: ExistingPatient, image_id: str, store: StoreDep, settings: SettingsDep) -> Response:
    node = next(iter(store.get_nodes([image_id])), None)
    if node is None or node.patient_id != patient_id or node.type is not NodeType.IMAGE:
        raise ProblemError(404, f"patient {patient_id!r} has no image {image_id!r}", kind="unknown-image")
    if not has_pixels(node, settings.upload_dir):
        raise ProblemError(404, f"image {image_id!r} has no pixel file on this server (only its record was ingested)",
                           kind="no-pixels")
    return Response(thumbnail_png(node, settings.upload_dir), media_type="image/png", headers={"Cache-Control": "private, no-store"})
