"""``POST /v1/records``: ingest a FHIR Bundle (JSON), FHIR NDJSON, or files as multipart.

One request is one transaction: a malformed or incomplete resource anywhere, or one of a
patient that does not exist (stored or in this request), leaves the store unchanged and the
422 problem names the file, resource and field. A resource that would take over or link to
another patient's records is a 409 naming it (ownership: see ``docs/architecture.md``).
Uploading the same records again adds nothing (``nodes_added`` is 0); the answer counts the
resources read, ``stored`` as nodes and ``skipped`` (by type and reason).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import AuditDep, ServicesDep, require_scope
from api.errors import ProblemError
from api.openapi import problems
from api.schemas import IngestResult, _to_utc
from api.uploads import UploadPart, WrittenUpload, parse_json_upload, parse_ndjson_upload, parse_parts, write_upload
from core import RecordError
from graph import ParsedFile, in_namespace, locate_error

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["records"])

JSON_TYPES = ("application/fhir+json", "application/json")
NDJSON_TYPES = ("application/fhir+ndjson", "application/x-ndjson", "application/ndjson")
MULTIPART = "multipart/form-data"

_BUNDLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A FHIR R4 Bundle (any type: transaction, collection, searchset, ...).",
    "required": ["resourceType"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["Bundle"]},
        "entry": {"type": "array", "items": {"type": "object"}},
    },
}
_NDJSON_SCHEMA = {"type": "string", "description": "FHIR R4 resources, one JSON object per line."}
_MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["files"],
    "properties": {
        "files": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "Files: .json (Bundle), .ndjson, .vcf/.vcf.gz, .npy/.dcm images.",
        },
        "patient_id": {"type": "string", "description": "Patient of image files and of a VCF without one."},
        "time": {"type": "string", "format": "date-time", "description": "Date of images/variants without one."},
    },
}
_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            **{t: {"schema": _BUNDLE_SCHEMA} for t in JSON_TYPES},
            **{t: {"schema": _NDJSON_SCHEMA} for t in NDJSON_TYPES},
            MULTIPART: {"schema": _MULTIPART_SCHEMA},
        },
    }
}


async def _parse_request(request: Request, services: ServicesDep) -> list[ParsedFile]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in JSON_TYPES:
        body = await request.body()
        return [await run_in_threadpool(parse_json_upload, body, "request body")]
    if ctype in NDJSON_TYPES:
        body = await request.body()
        return [await run_in_threadpool(parse_ndjson_upload, body, "request body")]
    if ctype == MULTIPART:
        form = await request.form()
        try:
            parts = [UploadPart(f.filename or "upload", await f.read())
                     for f in form.getlist("files") if isinstance(f, UploadFile)]
            patient_id = form.get("patient_id")
            time_text = form.get("time")
        finally:
            await form.close()
        if patient_id is not None and (not isinstance(patient_id, str) or not patient_id.strip()):
            raise RecordError("must be a non-empty string", field="patient_id")
        when = _form_time(time_text)
        return await run_in_threadpool(
            lambda: parse_parts(parts, upload_dir=services.settings.upload_dir, patient_id=patient_id, time=when)
        )
    raise ProblemError(
        415,
        f"Content-Type {ctype or '(none)'!r} is not accepted; "
        f"send one of {', '.join((*JSON_TYPES, *NDJSON_TYPES, MULTIPART))}",
        kind="unsupported-media-type",
    )


def _form_time(text: object) -> datetime | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise RecordError("must be an ISO 8601 date-time", field="time")
    try:
        return _to_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError as exc:
        raise RecordError(f"must be an ISO 8601 date-time: {exc}", field="time") from None


@router.post(
    "/records",
    response_model=IngestResult,
    status_code=status.HTTP_201_CREATED,
    summary="Ingest records (FHIR Bundle JSON, FHIR NDJSON, or multipart files) in one transaction.",
    dependencies=[Depends(require_scope("records:write"))],
    responses={**problems(415, 422),
               409: {"description": "A record would take over or link to another patient's records; "
                                    "the problem names it."}},
    openapi_extra=_OPENAPI_BODY,
)
async def post_records(
    request: Request,
    services: ServicesDep,
    audit: AuditDep,
    namespace: Annotated[str | None, Query(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$",
        description="Source system whose id space the records use: its patient ids become "
                    "'<namespace>:<id>', so two EHRs that reuse ids stay apart.")] = None,
) -> IngestResult:
    try:
        parsed = [in_namespace(p, namespace) for p in await _parse_request(request, services)]
    except RecordError:
        audit.record("records.write")
        raise
    name = parsed[0].source if len(parsed) == 1 else f"{len(parsed)} files"
    audit.record("records.write", sorted({n.patient_id for p in parsed for n in p.batch.nodes if n.patient_id}))
    try:
        done: WrittenUpload = await run_in_threadpool(write_upload, services.store, parsed, name)
    except RecordError as exc:  # the store refused a node: name the record it came from
        raise locate_error(exc, parsed) from exc
    return IngestResult(
        upload=name,
        resources=done.resources,
        stored=sum(p.stored for p in parsed),
        patients=done.patients,
        nodes_by_type=done.nodes_by_type,
        skipped=done.skipped,
        nodes_added=done.stats.nodes_added,
        nodes_updated=done.stats.nodes_updated,
        edges_added=done.stats.edges_added,
        edges_pending=done.stats.edges_pending,
    )
