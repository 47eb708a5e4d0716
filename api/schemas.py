"""Request and response models of the v1 API (the OpenAPI document is generated from these).

Library objects are mapped to these models at the route boundary; nothing here holds logic
beyond validation and shape.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from graph import Edge, Node
from scenarios import TreatmentPlan
from service import DEFAULT_MODEL, MODEL_NAME_PATTERN
from twin import TrainConfig

__all__ = [
    "AS_OF_PATTERN",
    "AsOf",
    "CohortQuery",
    "CohortResult",
    "CostOut",
    "CypherQuery",
    "CypherResult",
    "DriverOut",
    "EdgeOut",
    "FieldProblem",
    "ForecastOut",
    "ForecastRequest",
    "GraphOut",
    "Health",
    "IngestResult",
    "JobList",
    "JobOut",
    "MODEL_NAME",
    "ModelList",
    "ModelOut",
    "NodeOut",
    "PatientSummary",
    "PlanProblem",
    "PredicateIn",
    "Problem",
    "Readiness",
    "RecordProblem",
    "ScenarioOut",
    "ScenarioRequest",
    "TimelineOut",
    "TrainRequest",
    "TrialRequest",
    "edge_out",
    "node_out",
]


#: Timestamps the API accepts: wide enough for any clinical record, far from datetime's limits.
MIN_YEAR, MAX_YEAR = 1800, 2399
#: The same range as the OpenAPI document states it (a pattern on the year of an RFC 3339
#: date-time), so that what the schema admits and what the service accepts agree.
AS_OF_PATTERN = r"^(18|19|20|21|22|23)[0-9]{2}-"


def _iso_only(v: Any) -> Any:
    """Only ISO 8601 strings (as the schema says): no numbers read as Unix times."""
    if isinstance(v, datetime):
        return v
    if not isinstance(v, str) or not re.match(r"^[0-9]{4}-", v):
        raise ValueError("date-time must be an ISO 8601 string such as 2024-05-01T00:00:00Z")
    return v


def _to_utc(v: datetime) -> datetime:
    # The range applies to the year as written (what the schema's pattern sees); converting a
    # year-1800 or year-2399 time to UTC cannot overflow.
    if not MIN_YEAR <= v.year <= MAX_YEAR:
        raise ValueError(f"date-time must lie between the years {MIN_YEAR} and {MAX_YEAR}, got {v.year}")
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


#: A timestamp in any ISO 8601 form (years 1800-2399); naive values are taken as UTC.
AsOf = Annotated[
    datetime,
    BeforeValidator(_iso_only),
    AfterValidator(_to_utc),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": AS_OF_PATTERN,
                    "description": f"ISO 8601 date-time, years {MIN_YEAR}-{MAX_YEAR}; naive = UTC."}),
]


class _Strict(BaseModel):
    """Request bodies: unknown fields are refused; scalar fields are declared ``strict`` so that
    ``true`` is not read as 1 nor ``"5"`` as 5 (datetimes still parse from ISO strings)."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- problems
class FieldProblem(BaseModel):
    """One failing location of a request that did not validate."""

    location: str = Field(description="body, query, path or header.")
    field: str = Field(description="Dotted path of the failing field inside that location.")
    message: str


class RecordProblem(BaseModel):
    """Where a submitted record failed: upload name, resource (type/id or line), FHIR field, reason."""

    file: str | None = None
    resource: str | None = None
    field: str | None = None
    reason: str


class PlanProblem(BaseModel):
    """Where a submitted treatment plan failed: plan name, field (``actions[1].dose``), reason."""

    plan: str | None = None
    field: str | None = None
    reason: str


class CostOut(BaseModel):
    """The cost of a forecast or scenario request in trajectory-steps (see ``service.limits``):
    ``units = (trajectories + solves x 128) x solver_steps + point_weight x trajectories x output_points``."""

    kind: Literal["forecast", "scenarios"]
    units: int
    trajectories: int
    solves: int = Field(description="Batched solves (one per ensemble member with samples).")
    solver_steps: int
    output_points: int
    point_weight: int
    ceiling: int | None = Field(None, description="The ceiling the request was held to (request or job).")


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    type: str = Field("about:blank", description="URI identifying the kind of problem.")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str | None = Field(None, description="Path of the request (never its query string).")
    errors: list[FieldProblem] | None = Field(None, description="Validation failures, one per field.")
    record: RecordProblem | None = Field(None, description="The failing record of an ingest.")
    plan: PlanProblem | None = Field(None, description="The failing treatment plan of a scenario request.")
    cost: CostOut | None = Field(None, description="A request refused as over budget: its cost and the ceiling.")


# --------------------------------------------------------------------------- graph
class NodeOut(BaseModel):
    """A graph node as stored (times as UTC ISO 8601)."""

    id: str
    type: str
    patient_id: str | None = None
    time: datetime | None = None
    end: datetime | None = None
    code: str | None = None
    system: str | None = None
    display: str | None = None
    value: float | None = None
    unit: str | None = None
    props: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None
    pixels: bool | None = Field(None, description="Image nodes: whether this server holds the image's pixels "
                                "(a preview at GET /v1/patients/{patient_id}/images/{node id}).")


class EdgeOut(BaseModel):
    """A typed, directed edge."""

    source: str
    rel: str
    target: str
    props: dict[str, Any] = Field(default_factory=dict)


def node_out(n: Node) -> NodeOut:
    """Map a library :class:`~graph.schema.Node` to its response model."""
    return NodeOut(
        id=n.id,
        type=n.type.value,
        patient_id=n.patient_id,
        time=n.time,
        end=n.end,
        code=n.code,
        system=n.system,
        display=n.display,
        value=n.value,
        unit=n.unit,
        props=dict(n.props),
        source=n.source,
    )


def edge_out(e: Edge) -> EdgeOut:
    """Map a library :class:`~graph.schema.Edge` to its response model."""
    return EdgeOut(source=e.src, rel=e.rel.value, target=e.dst, props=dict(e.props))


class PatientSummary(BaseModel):
    """A patient as of a time: demographics node, record counts by node type, time span."""

    patient_id: str
    as_of: datetime | None = None
    patient: NodeOut | None = Field(None, description="The Patient node (absent if only events were ingested).")
    counts: dict[str, int] = Field(description="Node counts by type in the patient's graph.")
    first_record: datetime | None = None
    last_record: datetime | None = None


class TimelineOut(BaseModel):
    """A patient's time-stamped records in time order."""

    patient_id: str
    as_of: datetime | None = None
    count: int
    nodes: list[NodeOut]


class GraphOut(BaseModel):
    """Node-link export of a patient's graph as of a time."""

    patient_id: str
    as_of: datetime | None = None
    deidentified: bool = False
    counts: dict[str, int]
    nodes: list[NodeOut]
    links: list[EdgeOut]


# --------------------------------------------------------------------------- cohort query
class HasConditionIn(_Strict):
    has_condition: str = Field(min_length=1, description="SNOMED/ICD code of the condition.")
    system: str | None = None


class LabValueIn(_Strict):
    lab: str = Field(min_length=1, description="LOINC code of the lab.")
    op: Literal[">", ">=", "<", "<=", "="] = ">"
    value: float = Field(allow_inf_nan=False, description="Threshold in the lab's canonical unit.", strict=True)
    within_days: float | None = Field(
        None, gt=0, le=73_000, allow_inf_nan=False, strict=True,
        description="Only labs this recent, in days (needs as_of).",
    )


class OnMedicationIn(_Strict):
    on_medication: str = Field(min_length=1, description="RxNorm code.")


class CarriesVariantIn(_Strict):
    carries_variant_in: str = Field(min_length=1, description="HGNC gene symbol.")


class AllIn(_Strict):
    all: list[PredicateIn] = Field(min_length=1)


class AnyIn(_Strict):
    any: list[PredicateIn] = Field(min_length=1)


class NotIn(_Strict):
    not_: PredicateIn = Field(alias="not")
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


PredicateIn = HasConditionIn | LabValueIn | OnMedicationIn | CarriesVariantIn | AllIn | AnyIn | NotIn
for _m in (AllIn, AnyIn, NotIn):
    _m.model_rebuild()


class CohortQuery(_Strict):
    """A composable cohort predicate (see :mod:`graph.predicates`) evaluated as of a time."""

    predicate: PredicateIn
    as_of: AsOf | None = None

    def predicate_dict(self) -> dict[str, Any]:
        """The predicate in the JSON form :func:`graph.predicates.predicate_from_dict` reads."""
        return self.predicate.model_dump(by_alias=True, exclude_none=True)


class CohortResult(BaseModel):
    """Patients matching a cohort predicate."""

    count: int
    patient_ids: list[str]


class CypherQuery(_Strict):
    """A read-only Cypher statement; user values go in ``params``, never into the text."""

    query: str = Field(min_length=1, max_length=20_000)
    params: dict[str, Any] = Field(default_factory=dict)


class CypherResult(BaseModel):
    """Columns and JSON-ready rows; ``truncated`` when rows were cut at the configured limit."""

    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool


# --------------------------------------------------------------------------- records
class IngestResult(BaseModel):
    """What one upload changed (a repeated upload adds nothing: idempotent)."""

    upload: str = Field(description="Name given to the upload in errors and counts.")
    resources: int = Field(description="Resources (or files) read from the upload.")
    stored: int = Field(description="Resources stored as graph nodes (resources = stored + skipped; a rejected "
                                    "upload stores nothing and answers 409/422).")
    patients: list[str] = Field(description="Ids of the patients the upload touched.")
    nodes_by_type: dict[str, int] = Field(description="Nodes in the upload by type.")
    skipped: dict[str, int] = Field(description="Resources read but not stored, by type and reason.")
    nodes_added: int
    nodes_updated: int
    edges_added: int
    edges_pending: int = Field(description="Edges whose other end has not been ingested yet (store-wide).")


# --------------------------------------------------------------------------- models
MODEL_NAME = MODEL_NAME_PATTERN
_TRAIN = TrainConfig()  # the one set of training defaults (the CLI reads the same)


class SpecRequestIn(_Strict):
    """What to set of the cohort specification (:class:`twin.spec.SpecRequest`); ``null`` = derive."""

    targets: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None, max_length=64, description="Observation codes or display names to forecast.")
    transforms: dict[str, Literal["identity", "log1p", "positive"]] = Field(
        default_factory=dict, max_length=64, description="Transform per target code or name.")
    treatments: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None, max_length=64, description="Medication or procedure codes or display names used as treatment inputs.")
    effects: dict[str, Literal["level", "lasting"]] = Field(
        default_factory=dict, max_length=64, description="How each treatment's effect behaves, by code or name: "
        "level (while given) or lasting (accumulates with each dose).")
    events: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None, max_length=32, description="death, hospitalisation or condition:<code>.")
    step_days: float | None = Field(None, gt=0, le=31, allow_inf_nan=False, strict=True)
    time_unit_days: float | None = Field(None, gt=0, le=3650, allow_inf_nan=False, strict=True)
    horizon_days: float | None = Field(None, ge=1, le=3650, allow_inf_nan=False, strict=True)


class TrainRequest(_Strict):
    """Train a model on every patient in the store (a background job; see ``GET /v1/jobs/{id}``)."""

    name: str = Field(DEFAULT_MODEL, pattern=MODEL_NAME, description="Model name (lower-case letters, digits, - and _).")
    replace: bool = Field(False, description="Overwrite an existing model of this name.", strict=True)
    epochs: int = Field(_TRAIN.epochs, ge=1, le=500, strict=True)
    members: int = Field(_TRAIN.members, ge=1, le=10, description="Ensemble size (epistemic uncertainty).", strict=True)
    batch_size: int = Field(_TRAIN.batch_size, ge=1, le=1024, strict=True)
    origins_per_patient: int = Field(_TRAIN.origins_per_patient, ge=1, le=64, strict=True)
    patience: int = Field(_TRAIN.patience, ge=1, le=100, strict=True)
    early_stopping: Literal["loss", "lab_mse"] = Field(
        _TRAIN.early_stopping, description="Validation score that picks the kept weights: the full loss or the targets' squared error.")
    seed: int = Field(_TRAIN.seed, ge=0, le=2**31 - 1, strict=True)
    spec: SpecRequestIn = Field(default_factory=lambda: SpecRequestIn(),
                                description="Parts of the cohort specification to set; the rest is derived from "
                                            "the records.")


class ModelOut(BaseModel):
    """A trained model: its name, when and on what it was trained, its cohort specification and
    its training report."""

    name: str
    updated: datetime
    size_bytes: int
    trained_at: str | None = Field(None, description="When training finished (ISO 8601, UTC).")
    cohort: dict[str, Any] = Field(default_factory=dict, description="Training cohort: store and number of patients.")
    spec: dict[str, Any] = Field(default_factory=dict, description="Cohort specification: targets (code, name, unit, "
                                 "transform), treatments (code, name, kind, dose unit), events and time scales.")
    report: dict[str, Any] | None = Field(None, description="The training report written next to the checkpoint.")


class ModelList(BaseModel):
    """The trained models of the registry."""

    count: int
    models: list[ModelOut]


# --------------------------------------------------------------------------- twins
class _TwinRequest(_Strict):
    model: str = Field(DEFAULT_MODEL, pattern=MODEL_NAME, description="Name of a trained model (GET /v1/models).")
    as_of: AsOf | None = Field(None, description="Forecast origin; default: the patient's latest record.")
    n_samples: int = Field(32, ge=1, le=512, description="Draws of the twin's uncertainty.", strict=True)
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Same inputs and seed give the same numbers.", strict=True)


class ForecastRequest(_TwinRequest):
    """Forecast a patient's labs and event risks under their current therapy."""

    horizon_days: int = Field(365, ge=1, le=3650, strict=True)
    step_days: int = Field(7, ge=1, le=365, description="Spacing of the returned trajectory points.", strict=True)
    explain: bool = Field(False, description="Also name the records that drove the forecast (integrated gradients; "
                                             "counted in the cost).", strict=True)
    explain_lab: str | None = Field(None, min_length=1, max_length=100,
                                    description="Target lab code to explain (default: the model's first target).")


class LabForecastOut(BaseModel):
    code: str
    name: str
    unit: str
    days: list[float] = Field(description="Days after the origin.")
    median: list[float]
    p05: list[float]
    p95: list[float]
    mean: list[float]


class DriverOut(BaseModel):
    """A record that drove a forecast: its attribution to the explained lab's mean at ``day``
    (integrated gradients, in the lab's standardised units; positive pushes the lab up)."""

    node_id: str
    node_type: str
    score: float
    code: str | None = None
    display: str | None = None
    time: str | None = None


class ForecastOut(BaseModel):
    """Per-lab median and 5-95 % band over the horizon, and each event's risk by the horizon."""

    patient_id: str
    model: str
    origin: datetime
    horizon_days: float
    n_samples: int
    n_members: int
    labs: dict[str, LabForecastOut]
    event_risk: dict[str, float]
    explained_lab: str | None = Field(None, description="The lab the drivers explain (with explain=true).")
    explained_day: float | None = Field(None, description="The forecast day the drivers explain.")
    drivers: list[DriverOut] = Field(default_factory=list, description="With explain=true: the records that drove "
                                     "the forecast, strongest first.")
    cost: CostOut | None = Field(None, description="What this forecast cost (see max_request_cost).")


class ThresholdIn(_Strict):
    lab: str = Field(min_length=1, max_length=100, description="Lab code, name or alias (eGFR, HbA1c).")
    op: Literal[">", ">=", "<", "<="]
    value: float = Field(allow_inf_nan=False, strict=True)


class ScenarioRequest(_TwinRequest):
    """Simulate the patient's twin under several plans in one batched solve; optionally rank them."""

    plans: list[TreatmentPlan] = Field(min_length=1, max_length=32, description=(
        "Plans naming treatments of the model (its specification's treatments, see GET /v1/models) by code or "
        "by name; doses in any unit of the treatment's kind; continuous, `every` or `at` schedules."))
    horizon_days: float = Field(365, ge=1, le=3650, allow_inf_nan=False, strict=True)
    reference: str | None = Field(None, description="Plan differences are taken against (default: the first).")
    objective: str | None = Field(
        None, max_length=500, description="e.g. 'minimise HbA1c at 180d subject to eGFR > 45'."
    )
    thresholds: list[ThresholdIn] = Field(default_factory=list, max_length=16)
    days: list[Annotated[float, Field(ge=0, le=3650, allow_inf_nan=False, strict=True)]] | None = Field(
        None, max_length=16, description="Days to summarise (default: 90/180/365 within the horizon)."
    )
    strict: bool = Field(
        False, description="Refuse plans outside the model's training range instead of flagging.", strict=True
    )


class TrialRequest(_Strict):
    """A virtual trial: every patient matching ``cohort`` simulated under each plan (the first is
    the reference arm), merged into per-arm outcome distributions and per-patient effects."""

    cohort: PredicateIn = Field(description="Cohort predicate, as for POST /v1/query.")
    plans: list[TreatmentPlan] = Field(min_length=2, max_length=8, description=(
        "The arms: plans naming treatments of the model; the first is the reference the effects are taken "
        "against."))
    model: str = Field(DEFAULT_MODEL, pattern=MODEL_NAME, description="Name of a trained model (GET /v1/models).")
    as_of: AsOf | None = Field(None, description="Common origin; default: each patient's latest record.")
    days: list[Annotated[float, Field(ge=1, le=3650, allow_inf_nan=False, strict=True)]] = Field(
        default_factory=lambda: [90.0, 180.0], min_length=1, max_length=8, description="Days to summarise.")
    n_samples: int = Field(32, ge=2, le=512, description="Draws of each twin's uncertainty.", strict=True)
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Same inputs, seed and shard size give the same numbers.",
                      strict=True)
    better: dict[Annotated[str, Field(max_length=200)], Literal["lower", "higher"]] = Field(
        default_factory=dict, max_length=64, description="Lab (code or name) -> the direction that is an "
                                                         "improvement; default lower.")
    per_patient: bool = Field(False, description="Include every patient's effect distribution.", strict=True)
    plot: bool = Field(False, description="Include the trial's plot (arms and per-patient effects at the last day) "
                                          "as a base64 PNG in `plot_png`.", strict=True)

    def cohort_dict(self) -> dict[str, Any]:
        return self.cohort.model_dump(by_alias=True, exclude_none=True)


class ScenarioOut(BaseModel):
    """The scenario engine's result for one patient (see ``scenarios.ScenarioResult.to_dict``)."""

    patient_id: str
    model: str
    origin: datetime
    plans: list[str]
    reference: str
    horizon_days: float
    n_samples: int
    seed: int
    quantiles: list[float]
    labs: dict[str, dict[str, str]] = Field(description="Lab code -> name and unit.")
    events: list[str]
    flags: list[dict[str, Any]] = Field(description="Plans outside what the model saw: a dose far outside the "
                                        "training range, in the treatment's own unit.")
    results: list[dict[str, Any]] = Field(description="Per plan: labs at each day with intervals and differences "
                                                       "to the reference, event risks, threshold times, flags.")
    ranking: dict[str, Any] | None = Field(None, description="Plans ordered by the objective, with P(top is best).")
    cost: CostOut | None = Field(None, description="What this run cost (see max_request_cost).")


# --------------------------------------------------------------------------- jobs, health
class JobOut(BaseModel):
    """State of a background job; ``failed`` with ``error`` after a restart interrupted it,
    ``cancelled`` after ``DELETE /v1/jobs/{id}``. ``result`` holds what the job's synchronous
    endpoint would have answered (a forecast, a scenario run) or a training report."""

    id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float = Field(ge=0, le=1)
    message: str | None = None
    created: datetime
    updated: datetime
    result: dict[str, Any] | None = None
    error: str | None = None


class JobList(BaseModel):
    """Background jobs, newest first."""

    count: int
    jobs: list[JobOut]


class Health(BaseModel):
    """The process is up (liveness)."""

    status: Literal["ok"] = "ok"
    version: str


class Readiness(BaseModel):
    """The service can answer: its store is reachable (readiness)."""

    status: Literal["ready"] = "ready"
    store: Literal["embedded", "neo4j"] = Field(description="Store kind, never its URL or credentials.")
