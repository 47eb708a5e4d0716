"""The MEDS side of the graph: how node codes become MEDS codes and which extra columns we write.

Shared by the MEDS writer (:mod:`graph.export_meds`) and reader (:mod:`graph.ingest.meds`).

Codes are ``{VOCABULARY}//{code}`` with a short prefix per code system (``LOINC//2345-7``,
``RxNorm//860975``, ``SNOMED//44054006``, ``ICD10CM//E11.9``); a system without a short
prefix keeps its URI as the prefix (``http://example.org/codes//A1``), a code without a system
is ``{NodeType}//{code}`` and a node with no code at all (a lab named only by text)
``{NodeType}_TEXT//{display}``. The
patient's own row is ``MEDS_BIRTH`` (or ``MEDS_SUBJECT`` without a birth date), with derived
rows ``GENDER//{sex}`` and ``MEDS_DEATH``.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "BIRTH", "DEATH", "EXTRA_COLUMNS", "GENDER", "PREFIX_OF_SYSTEM", "SUBJECT", "SYSTEM_OF_PREFIX", "TEXT_SUFFIX", "meds_code",
    "split_code", "subject_id_of",
]

BIRTH, DEATH = "MEDS_BIRTH", "MEDS_DEATH"
#: The patient row of a patient without a birth date (static: no time).
SUBJECT = "MEDS_SUBJECT"
GENDER = "GENDER"
#: Prefix suffix of a node without a code: ``Lab_TEXT//{display}``.
TEXT_SUFFIX = "_TEXT"

#: Short vocabulary prefixes of the code systems the parsers write (one prefix per system).
PREFIX_OF_SYSTEM: dict[str, str] = {
    "http://loinc.org": "LOINC",
    "http://snomed.info/sct": "SNOMED",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD10CM",
    "http://hl7.org/fhir/sid/icd-10": "ICD10",
    "http://hl7.org/fhir/sid/icd-9-cm": "ICD9CM",
    "http://hl7.org/fhir/sid/ndc": "NDC",
    "http://www.whocc.no/atc": "ATC",
    "http://www.ama-assn.org/go/cpt": "CPT4",
    "http://dicom.nema.org/resources/ontology/DCM": "DCM",
    "http://www.genenames.org": "HGNC",
}
#: Prefixes read back (case-insensitive), including the spellings other MEDS ETLs use.
SYSTEM_OF_PREFIX: dict[str, str] = {
    **{p.upper(): s for s, p in PREFIX_OF_SYSTEM.items()},
    "SNOMEDCT": "http://snomed.info/sct", "SNOMED-CT": "http://snomed.info/sct",
    "ICD-10-CM": "http://hl7.org/fhir/sid/icd-10-cm", "ICD9": "http://hl7.org/fhir/sid/icd-9-cm",
}

#: Columns beyond the MEDS core (``subject_id``, ``time``, ``code``, ``numeric_value``,
#: ``text_value``) and what they hold; with them a dataset round-trips to the same graph.
EXTRA_COLUMNS: dict[str, str] = {
    "node_type": "the graph node type (Patient, Lab, Condition, …); null on derived rows",
    "node_id": "the node's id in the graph (a pseudonym in de-identified exports)",
    "encounter_id": "the id of the Encounter the event was recorded in",
    "treats": "ids of the Conditions a Medication treats (list of strings)",
    "end": "end of the event (timestamp[us], UTC)",
    "system": "the code system URI as recorded",
    "display": "the record's display name of the code",
    "unit": "UCUM unit of numeric_value (and value)",
    "value": "the value at full (float64) precision; numeric_value is its float32",
    "properties": "the node's other properties as JSON",
    "source": "the record the node was read from (fhir:Observation/…; none in de-identified exports)",
}


def meds_code(node_type: str, system: str | None, code: str | None, display: str | None) -> str:
    """The MEDS code of a node (see the module docstring)."""
    if code:
        prefix = PREFIX_OF_SYSTEM.get(system, system) if system else node_type
        return f"{prefix}//{code}"
    return f"{node_type}{TEXT_SUFFIX}//{display or 'unknown'}"


def split_code(code: str) -> tuple[str | None, str]:
    """``(system URI or the prefix as written, code)`` of a MEDS code; ``(None, code)`` without a prefix."""
    if "//" not in code:
        return None, code
    prefix, rest = code.rsplit("//", 1) if code.count("//") > 1 and "://" in code else code.split("//", 1)
    return SYSTEM_OF_PREFIX.get(prefix.upper(), prefix), rest


def subject_id_of(patient_id: str) -> int:
    """A stable non-negative int64 MEDS ``subject_id`` for a patient id (63 bits of its SHA-256)."""
    return int(hashlib.sha256(patient_id.encode("utf-8")).hexdigest()[:16], 16) >> 1
