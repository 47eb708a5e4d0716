"""FHIR R4 JSON into the patient graph: Bundles, single resources and NDJSON bulk files.

Entry points are :func:`parse_bundle`, :func:`parse_fhir_resources` and :func:`parse_ndjson`;
the per-type mappings live in :mod:`graph.ingest.fhir_resources` and
:mod:`graph.ingest.fhir_observation`. Rules shared by all resource types:

* Node ids are ``"{resourceType}/{id}"``. A resource without ``id`` takes the id its Bundle
  entry's ``fullUrl`` gives it (``urn:uuid:<uuid>``, or an absolute URL ending in
  ``<resourceType>/<id>``); a resource that becomes a node and has neither is rejected
  (field ``id``): ids are never invented, so a changed record cannot land as a second node.
* References resolve within the file: ``urn:uuid:`` and absolute ``fullUrl``\\ s, relative
  ``Type/id`` (``/_history/n`` dropped), absolute URLs ending in ``Type/id``, and
  ``#contained``. Conditional references (``Type?param=...``) do not resolve.
* Every event needs a patient: a resource whose ``subject`` (``patient`` for
  MolecularSequence) is missing, does not resolve, is not a Patient, or is a *contained*
  Patient (no stable id) is rejected naming that field. Whether the Patient exists is checked
  when the batch is written (it must be stored already or be in the same file).
* A Bundle entry needs a ``resource``; entries that only carry a ``request`` (transaction
  DELETE/GET) or a ``response`` are counted as ``"Bundle.entry(request only)"`` /
  ``"Bundle.entry(response only)"`` and skipped (nothing is deleted).
* Resources that are ``entered-in-error`` (and cancelled / not-done ones, see the mappers)
  are counted and skipped. Types without a mapping (Claim, Immunization, CarePlan, ...) are
  counted and skipped.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import RecordError
from graph.ingest.builder import BatchBuilder, ParsedFile
from graph.ingest.fields import Loc

__all__ = ["FhirFile", "Ref", "parse_bundle", "parse_fhir_resources", "parse_json_text", "parse_ndjson"]

_TYPE_ID = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
_HISTORY = re.compile(r"/_history/[^/]+$")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_text(text: str | bytes, *, file: str, resource: str | None = None) -> Any:
    """``json.loads`` that rejects NaN/Infinity and reports syntax errors as :class:`RecordError`."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecordError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        where = f" (line {exc.lineno} column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise RecordError(f"invalid JSON{where}: {getattr(exc, 'msg', str(exc))}", file=file, resource=resource) from None


@dataclass(frozen=True, slots=True)
class Ref:
    """A resolved reference: target type and id, and the target resource when it is in the file."""

    type: str
    id: str
    resource: dict[str, Any] | None = None
    contained: bool = False

    @property
    def node_id(self) -> str:
        return f"{self.type}/{self.id}"


@dataclass(slots=True)
class _Entry:
    type: str
    id: str | None  # None: neither an id nor a fullUrl naming one
    resource: dict[str, Any]
    loc: Loc


#: Mapped types that never become a node themselves (read through references), so need no id.
_NO_NODE = frozenset({"Medication"})
_URN_UUID = re.compile(r"^urn:uuid:([A-Za-z0-9\-.]{1,64})$")


def _id_from_full_url(full_url: Any, rtype: str) -> str | None:
    """The id a Bundle entry's ``fullUrl`` gives a resource without one (``None`` if it gives none)."""
    if not isinstance(full_url, str):
        return None
    m = _URN_UUID.match(full_url)
    if m:
        return m.group(1)
    m = _TYPE_ID.search(_HISTORY.sub("", full_url))
    return m.group(2) if m and m.group(1) == rtype else None


class FhirFile:
    """The resources of one file, their reference index and the batch being built."""

    def __init__(self, source: str, fmt: str, base_dir: Path | None) -> None:
        self.source = source
        self.format = fmt
        self.base_dir = base_dir
        self.builder = BatchBuilder()
        self.resources: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.entries: list[_Entry] = []
        self._by_key: dict[str, _Entry] = {}
        #: ImagingStudy id -> file references of the Media that are ``partOf`` it.
        self.study_files: dict[str, list[str]] = {}
        #: ids of Media whose file went to their ImagingStudy's node.
        self.attached_media: set[str] = set()

    # ---------------------------------------------------------------- indexing
    def add_entry(self, resource: Any, *, full_url: Any, label: str) -> None:
        """Validate the envelope of one resource and index it (no mapping yet)."""
        loc = Loc(self.source, label)
        if not isinstance(resource, dict):
            raise loc.error(f"a resource must be a JSON object, got {type(resource).__name__}")
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not re.fullmatch(r"[A-Z][A-Za-z]{1,63}", rtype):
            raise loc.error(f"missing or invalid resourceType: {str(rtype)[:40]!r}", "resourceType")
        rid = resource.get("id")
        if rid is None:
            rid = _id_from_full_url(full_url, rtype)
        elif not isinstance(rid, str) or not rid.strip():
            raise loc.error("id must be a non-empty string", "id")
        if not label.startswith("line ") and rid is not None:
            loc = Loc(self.source, f"{rtype}/{rid}")
        entry = _Entry(rtype, rid, resource, loc)
        self.entries.append(entry)
        self.resources[rtype] += 1
        if rid is not None:
            self._by_key[f"{rtype}/{rid}"] = entry
        if full_url is not None:
            if not isinstance(full_url, str):
                raise loc.error("fullUrl must be a string", "fullUrl")
            self._by_key[full_url] = entry

    # ---------------------------------------------------------------- references
    def resolve(self, ref: Any, loc: Loc, path: str, owner: dict[str, Any]) -> Ref | None:
        """Resolve a Reference object (``None`` when absent, conditional or not a local id)."""
        if ref is None:
            return None
        if not isinstance(ref, dict):
            raise loc.error(f"a Reference must be an object, got {type(ref).__name__}", path)
        target = ref.get("reference")
        if target is None:
            return None
        if not isinstance(target, str):
            raise loc.error(f"expected a string, got {type(target).__name__}", f"{path}.reference")
        if target.startswith("#"):
            for i, c in enumerate(loc.lst(owner, "contained", "contained")):
                if isinstance(c, dict) and c.get("id") == target[1:]:
                    ctype = c.get("resourceType")
                    if not isinstance(ctype, str):
                        raise loc.error("contained resource without resourceType", f"contained[{i}].resourceType")
                    return Ref(ctype, target[1:], c, contained=True)
            return None
        hit = self._by_key.get(target)
        if hit is None:
            target = _HISTORY.sub("", target)
            hit = self._by_key.get(target)
        if hit is not None:
            if hit.id is None:
                raise loc.error(f"references a {hit.type} that has no id", path)
            return Ref(hit.type, hit.id, hit.resource)
        if "?" in target:
            return None
        m = _TYPE_ID.search(target)
        if m is None:
            return None
        found = self._by_key.get(f"{m.group(1)}/{m.group(2)}")
        return Ref(m.group(1), m.group(2), found.resource if found else None)

    def patient_of(self, r: dict[str, Any], loc: Loc, key: str = "subject") -> str:
        """Bare id of the (non-contained) Patient a resource is about.

        Raises a :class:`RecordError` naming ``key`` when there is none: the field is missing,
        does not resolve (a conditional reference), names another type or a contained Patient.
        """
        raw = loc.obj(r, key, key)
        rtype = r.get("resourceType")
        if raw is None or raw.get("reference") is None:
            raise loc.error(f"{'an' if str(rtype)[:1] in 'AEIOU' else 'a'} {rtype} needs a {key} referencing "
                            "its Patient", key)
        ref = self.resolve(raw, loc, key, r)
        if ref is None:
            raise loc.error(f"{key} {str(raw['reference'])[:80]!r} does not identify a Patient", key)
        if ref.type != "Patient":
            raise loc.error(f"{key} must reference a Patient, got {ref.type}", key)
        if ref.contained:
            raise loc.error(f"{key} references a contained Patient, which has no stable id", key)
        self.builder.origin = (loc.resource, key)
        return ref.id

    def encounter_of(self, r: dict[str, Any], loc: Loc, key: str = "encounter") -> str | None:
        ref = self.resolve(loc.obj(r, key, key), loc, key, r)
        return ref.node_id if ref is not None and ref.type == "Encounter" and not ref.contained else None

    def skip(self, rtype: str, reason: str | None = None) -> None:
        self.skipped[f"{rtype}({reason})" if reason else rtype] += 1

    # ---------------------------------------------------------------- mapping
    def build(self) -> ParsedFile:
        from graph.ingest.fhir_resources import MAPPERS, collect_media_files

        collect_media_files(self)
        for e in self.entries:
            mapper: Callable[[FhirFile, dict[str, Any], str, Loc], None] | None = MAPPERS.get(e.type)
            if mapper is None:
                self.skip(e.type)
                continue
            if e.id is None:
                if e.type not in _NO_NODE:
                    raise e.loc.error(f"a {e.type} needs an id (or a Bundle entry fullUrl that gives one); "
                                      "ids are never invented", "id")
                self.skip(e.type)
                continue
            self.builder.origin = (e.loc.resource, None)
            try:
                mapper(self, e.resource, e.id, e.loc)
            except RecordError:
                raise
            except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
                # defensive: a mapper bug on odd input still names the resource
                raise e.loc.error(f"cannot map resource: {exc}") from exc
        return ParsedFile(self.source, self.format, self.builder.batch(), self.resources, self.skipped,
                          self.builder.origins)


def parse_fhir_resources(
    resources: Iterable[Any], *, source_name: str, base_dir: Path | None = None, format: str = "fhir-json"
) -> ParsedFile:
    """Map FHIR resources (already decoded JSON objects) of one file into a batch."""
    ff = FhirFile(source_name, format, base_dir)
    for i, r in enumerate(resources):
        if isinstance(r, dict) and r.get("resourceType") == "Bundle":
            _add_bundle_entries(ff, r)
            continue
        ff.add_entry(r, full_url=None, label=f"resource {i + 1}")
    return ff.build()


# Bundle.type value set (R4, http://hl7.org/fhir/bundle-type)
BUNDLE_TYPES = frozenset({"document", "message", "transaction", "transaction-response", "batch", "batch-response",
                          "history", "searchset", "collection"})


def _add_bundle_entries(ff: FhirFile, bundle: dict[str, Any]) -> None:
    loc = Loc(ff.source, f"Bundle/{bundle.get('id')}" if isinstance(bundle.get("id"), str) else "Bundle")
    btype = bundle.get("type")
    if btype is not None and btype not in BUNDLE_TYPES:
        raise loc.error(f"unknown Bundle.type {str(btype)[:40]!r} (expected one of {', '.join(sorted(BUNDLE_TYPES))})",
                        "type")
    entries = loc.lst(bundle, "entry", "entry")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise Loc(ff.source, f"entry {i + 1}").error(f"a Bundle entry must be an object, got {type(entry).__name__}")
        res = entry.get("resource")
        if res is None:
            kind = "request" if entry.get("request") is not None else "response" if entry.get("response") else None
            if kind is None:
                raise Loc(ff.source, f"entry {i + 1}").error("a Bundle entry needs a resource", "resource")
            ff.resources["Bundle.entry"] += 1  # transaction DELETE/GET or a response: nothing to store
            ff.skip("Bundle.entry", f"{kind} only")
            continue
        if isinstance(res, dict) and res.get("resourceType") == "Bundle":
            ff.resources["Bundle"] += 1
            ff.skip("Bundle", "nested")
            continue
        ff.add_entry(res, full_url=entry.get("fullUrl"), label=f"entry {i + 1}")


def parse_bundle(bundle: Any, *, source_name: str, base_dir: Path | None = None) -> ParsedFile:
    """Map a FHIR Bundle (any type: transaction, collection, searchset, document, ...)."""
    if not isinstance(bundle, dict):
        raise RecordError(f"a Bundle must be a JSON object, got {type(bundle).__name__}", file=source_name)
    if bundle.get("resourceType") != "Bundle":
        raise RecordError(f"expected resourceType 'Bundle', got {str(bundle.get('resourceType'))[:40]!r}",
                          file=source_name, field="resourceType")
    ff = FhirFile(source_name, "fhir-bundle", base_dir)
    _add_bundle_entries(ff, bundle)
    return ff.build()


def parse_ndjson(text: str, *, source_name: str, base_dir: Path | None = None) -> ParsedFile:
    """Map an NDJSON bulk-export file: one resource per line (blank lines ignored)."""
    ff = FhirFile(source_name, "fhir-ndjson", base_dir)
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        label = f"line {n}"
        ff.add_entry(parse_json_text(line, file=source_name, resource=label), full_url=None, label=label)
    return ff.build()
