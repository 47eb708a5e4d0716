"""Exports of a :class:`~graph.query.Subgraph`: networkx, node-link JSON and PyG ``HeteroData``.

The ``HeteroData`` export is structural (ids, times, values, typed edge indices); the model
builds its own feature tensors in :mod:`twin.features`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import networkx as nx

from core.errors import QueryError
from graph.query import Subgraph
from graph.schema import Edge, Node, Prop
from graph.store.codec import edge_to_record, node_to_record

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

__all__ = ["deidentify", "node_document", "strip_paths", "to_hetero_data", "to_networkx", "to_node_link"]


def node_document(n: Node) -> dict[str, Any]:
    """A node as a JSON-ready document (schema fields, times as ISO UTC, ``props`` as a mapping)."""
    rec = node_to_record(n)
    rec["props"] = dict(n.props)
    return rec


def _node_attrs(n: Node) -> dict[str, Any]:
    return {k: v for k, v in node_document(n).items() if k != "id"}


def to_networkx(g: Subgraph) -> nx.MultiDiGraph:
    """A ``MultiDiGraph`` with node attributes from the schema and ``rel`` on each edge."""
    out = nx.MultiDiGraph()
    for n in g.nodes:
        out.add_node(n.id, **_node_attrs(n))
    for e in g.edges:
        out.add_edge(e.src, e.dst, key=e.rel.value, rel=e.rel.value, **dict(e.props))
    return out


def to_node_link(g: Subgraph) -> dict[str, Any]:
    """JSON-ready node-link document: ``{"nodes": [...], "links": [...]}`` (times as ISO UTC)."""
    nodes = [{"id": n.id, **_node_attrs(n)} for n in g.nodes]
    links = []
    for e in g.edges:
        rec = edge_to_record(e)
        rec["props"] = dict(e.props)
        links.append({"source": rec.pop("src"), "target": rec.pop("dst"), **rec})
    return {"directed": True, "multigraph": True, "nodes": nodes, "links": links}


def to_hetero_data(g: Subgraph) -> HeteroData:
    """PyG ``HeteroData``: per node type ``ids``, ``time`` (epoch seconds, NaN if timeless) and
    ``value`` (NaN if none); per ``(src type, rel, dst type)`` an ``edge_index``."""
    import torch
    from torch_geometric.data import HeteroData

    data = HeteroData()
    index: dict[str, tuple[str, int]] = {}
    by_type: dict[str, list[Any]] = {}
    for n in g.nodes:
        by_type.setdefault(n.type.value, []).append(n)
    for t, nodes in by_type.items():
        for i, n in enumerate(nodes):
            index[n.id] = (t, i)
        data[t].ids = [n.id for n in nodes]
        data[t].num_nodes = len(nodes)
        data[t].time = torch.tensor([n.time.timestamp() if n.time else float("nan") for n in nodes], dtype=torch.float64)
        data[t].value = torch.tensor([n.value if n.value is not None else float("nan") for n in nodes], dtype=torch.float32)
    pairs: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    for e in g.edges:
        (st, si), (dt, di) = index[e.src], index[e.dst]
        pairs.setdefault((st, e.rel.value, dt), []).append((si, di))
    for key, ij in pairs.items():
        data[key].edge_index = torch.tensor(ij, dtype=torch.long).t().contiguous()
    return data


# --------------------------------------------------------------------------- file paths
#: Image properties that name files: ``file`` (the reference as given), ``files`` (all of them)
#: and ``file_path`` (resolved to an absolute path on the machine that ingested the records).
_FILE_PROPS = frozenset({Prop.FILE, "files", Prop.FILE_PATH})


def _base_name(ref: object) -> object:
    if not isinstance(ref, str):
        return ref
    return PurePath(ref.replace("\\", "/")).name or ref.rsplit("/", 1)[-1]


def strip_paths(n: Node) -> Node:
    """``n`` without filesystem paths, for answers that leave the machine: ``file_path`` is
    dropped and ``file``/``files`` keep only their base names (for API uploads a content hash
    and suffix). The store keeps the paths, which the model reads the pixels from."""
    if not any(k in n.props for k in _FILE_PROPS):
        return n
    props: dict[str, Any] = {k: v for k, v in n.props.items() if k != Prop.FILE_PATH}
    if Prop.FILE in props:
        props[Prop.FILE] = _base_name(props[Prop.FILE])
    if isinstance(props.get("files"), list):
        props["files"] = [_base_name(f) for f in props["files"]]
    return replace(n, props=props)


# --------------------------------------------------------------------------- de-identification
#: Property keys (compared in lower case) holding direct identifiers or free text: dropped.
_DROPPED_PROPS = frozenset({
    "name", "names", "given", "family", "prefix", "suffix", "alias", "maiden_name", "address", "telecom",
    "phone", "email", "contact", "identifier", "identifiers", "mrn", "ssn", "text", "note", "notes", "comment",
    "comments", "description", "narrative", "value_string", "title", "performer", "author",
})
#: Key fragments that mark a property as identifying wherever they occur (``patient_name``, ...).
_DROPPED_FRAGMENTS = ("name", "address", "phone", "email", "identifier", "telecom")
#: Keys whose values are personal names: each word of 4+ characters is scrubbed everywhere too.
_NAME_FRAGMENTS = ("name", "given", "family", "alias")
#: Secrets shorter than this are replaced only where a whole value equals them (a substring
#: rule for ``"1"`` would rewrite every code and number).
_MIN_SUBSTRING = 4
#: Per-patient shifts add 1 to this many days beyond the export's date span.
_SHIFT_RANGE_DAYS = 3653
_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?$")
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,8}){1,2}$")


def _dropped(key: str) -> bool:
    k = key.lower()
    return k in _DROPPED_PROPS or any(f in k for f in _DROPPED_FRAGMENTS)


def _strings(v: object) -> Iterable[str]:
    if isinstance(v, str):
        yield v
    elif isinstance(v, Mapping):
        for k, x in v.items():
            yield str(k)
            yield from _strings(x)
    elif isinstance(v, (list, tuple, set)):
        for x in v:
            yield from _strings(x)


def _valid_date(y: str, m: str, d: str) -> date | None:
    try:
        return date(int(y), int(m), int(d))
    except ValueError:
        return None


class _Deidentifier:
    """One de-identification of one subgraph (see :func:`deidentify` for the policy)."""

    def __init__(self, g: Subgraph, salt: str) -> None:
        self.salt = salt
        self.shared = {n.id for n in g.nodes if n.patient_id is None}
        patients = {n.patient_id for n in g.nodes if n.patient_id} | {e.patient_id for e in g.edges if e.patient_id}
        self.patients = sorted(patients)
        owned = {n.id for n in g.nodes if n.patient_id is not None}
        owned |= {x for e in g.edges for x in (e.src, e.dst) if x not in self.shared and not self._vocabulary(x)}
        # secret -> pseudonym; longest first so that an id inside a longer id goes with the longer one
        self.pseudonyms: dict[str, str] = {}
        for p in self.patients:
            self.pseudonyms[p] = self.pid(p)
        for i in owned:
            self.pseudonyms[i] = self.nid(i)
            tail = i.split("/", 1)[1] if "/" in i else ""
            if tail:
                self.pseudonyms.setdefault(tail, self._token(tail))
        for n in g.nodes:
            if n.source:
                for part in {n.source, n.source.split(":", 1)[-1], n.source.rsplit("/", 1)[-1]}:
                    self.pseudonyms.setdefault(part, self._token(part))
            for k, v in n.props.items():
                self._collect_dropped(k, v)
        for e in g.edges:
            for k, v in e.props.items():
                self._collect_dropped(k, v)
        self.pseudonyms = {k: v for k, v in self.pseudonyms.items() if k}
        long = sorted((k for k in self.pseudonyms if len(k) >= _MIN_SUBSTRING), key=lambda k: (-len(k), k))
        self.pattern = re.compile("|".join(re.escape(k) for k in long)) if long else None
        self.shift_days = self._shifts(g)

    # ---------------------------------------------------------------- pseudonyms
    def _hash(self, value: str) -> str:
        return hashlib.sha256(f"{self.salt}|{value}".encode()).hexdigest()

    def pid(self, p: str) -> str:
        return self._hash(p)[:16]

    def nid(self, i: str) -> str:
        return "n" + self._hash(i)[:20]

    def _token(self, value: str) -> str:
        return "x" + self._hash(value)[:12]

    @staticmethod
    def _vocabulary(i: str) -> bool:
        return i.startswith(("Concept/", "Gene/"))

    def _collect_dropped(self, key: str, value: object) -> None:
        if _dropped(key):
            for text in _strings(value):
                self.pseudonyms.setdefault(text, self._token(text))
                if any(f in key.lower() for f in _NAME_FRAGMENTS):
                    for word in re.split(r"[\s,;./\\_()-]+", text):
                        if len(word) >= _MIN_SUBSTRING:
                            self.pseudonyms.setdefault(word, self._token(word))
        elif key in _FILE_PROPS:
            for text in _strings(value):
                name = str(_base_name(text))
                stem = _SUFFIX.sub("", name)
                for part in (text, name, stem):
                    self.pseudonyms.setdefault(part, self._token(part))

    def node_id(self, i: str) -> str:
        if i in self.shared or self._vocabulary(i):
            return self.scrub(i, None)
        return self.nid(i)

    # ---------------------------------------------------------------- dates
    def _shifts(self, g: Subgraph) -> dict[str | None, int]:
        days: list[int] = []
        for n in g.nodes:
            days += [t.date().toordinal() for t in (n.time, n.end) if t is not None]
            for text in _strings(n.props):
                days += [d.toordinal() for d in (_valid_date(*m.groups()) for m in _DATE.finditer(text)) if d]
            for text in _strings([n.id, n.code, n.system, n.display, n.unit]):
                days += [d.toordinal() for d in (_valid_date(*m.groups()) for m in _DATE.finditer(text)) if d]
            bd = n.props.get(Prop.BIRTH_DATE)
            if isinstance(bd, str) and _PARTIAL_DATE.match(bd.strip()):
                days.append(self._partial_anchor(bd.strip()).toordinal())
        for e in g.edges:
            for text in _strings(e.props):
                days += [d.toordinal() for d in (_valid_date(*m.groups()) for m in _DATE.finditer(text)) if d]
        if g.as_of is not None:
            days.append(g.as_of.date().toordinal())
        if not days:
            return {}
        lo, hi = min(days), max(days)
        reach = (hi - lo) + 1 + _SHIFT_RANGE_DAYS
        if lo - reach > date(1, 1, 2).toordinal():
            sign = -1  # back before every real date of the export
        elif hi + reach < date(9999, 12, 30).toordinal():
            sign = 1  # or, near year 1, after every one
        else:
            raise QueryError("the dates of this graph span too many years to shift them for de-identification")
        out: dict[str | None, int] = {}
        for p in [None, *self.patients]:
            h = int(self._hash(f"date-shift|{p or ''}")[:12], 16) % _SHIFT_RANGE_DAYS
            out[p] = sign * ((hi - lo) + 1 + h)
        return out

    @staticmethod
    def _partial_anchor(text: str) -> date:
        m = _PARTIAL_DATE.match(text)
        assert m is not None
        return date(int(m.group(1)), int(m.group(2) or 7), 15 if m.group(2) else 1)

    def shift_time(self, t: datetime | None, owner: str | None) -> datetime | None:
        return None if t is None else t + timedelta(days=self.shift_days.get(owner, 0))

    def _shift_dates(self, text: str, owner: str | None) -> str:
        k = self.shift_days.get(owner, 0)
        if not k:
            return text

        def sub(m: re.Match[str]) -> str:
            d = _valid_date(*m.groups())
            return (d + timedelta(days=k)).isoformat() if d else m.group(0)

        return _DATE.sub(sub, text)

    # ---------------------------------------------------------------- values
    def scrub(self, text: str, owner: str | None) -> str:
        """Replace every secret by its pseudonym (until none is left) and shift dates."""
        if text in self.pseudonyms:
            text = self.pseudonyms[text]
        if self.pattern is not None:
            for _ in range(4):
                new = self.pattern.sub(lambda m: self.pseudonyms[m.group(0)], text)
                if new == text:
                    break
                text = new
        return self._shift_dates(text, owner)

    def value(self, v: Any, owner: str | None) -> Any:
        if isinstance(v, str):
            return self.scrub(v, owner)
        if isinstance(v, datetime):
            return self.shift_time(v, owner)
        if isinstance(v, date):
            return v + timedelta(days=self.shift_days.get(owner, 0))
        if isinstance(v, Mapping):
            return {self.scrub(str(k), owner): self.value(x, owner) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [self.value(x, owner) for x in v]
        return v

    def file_ref(self, ref: object) -> object:
        if not isinstance(ref, str):
            return None
        m = _SUFFIX.search(str(_base_name(ref)))
        return f"file-{self._hash(ref)[:16]}{m.group(0).lower() if m else ''}"

    def props(self, props: Mapping[str, Any], owner: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in props.items():
            if _dropped(k) or k == Prop.FILE_PATH:
                continue
            if k == Prop.FILE:
                out[k] = self.file_ref(v)
            elif k == "files" and isinstance(v, list):
                out[k] = [self.file_ref(f) for f in v]
            elif k == Prop.BIRTH_DATE:
                out[k] = self._birth_date(v, owner)
            elif k == Prop.BIRTH_YEAR:
                out[k] = self._birth_year(v, props, owner)
            else:
                out[self.scrub(k, owner)] = self.value(v, owner)
        return {k: v for k, v in out.items() if v is not None}

    def _birth_date(self, v: object, owner: str | None) -> str | None:
        if not isinstance(v, str):
            return None
        text = v.strip()
        m = _PARTIAL_DATE.match(text)
        if m is None:
            return self.scrub(text, owner)
        shifted = self._partial_anchor(text) + timedelta(days=self.shift_days.get(owner, 0))
        return shifted.isoformat()[: len(text)]

    def _birth_year(self, v: object, props: Mapping[str, Any], owner: str | None) -> int | None:
        bd = props.get(Prop.BIRTH_DATE)
        if isinstance(bd, str):
            shifted = self._birth_date(bd, owner)
            if shifted and shifted[:4].isdigit():
                return int(shifted[:4])
        try:
            year = int(str(v))
        except ValueError:
            return None
        return (date(year, 7, 1) + timedelta(days=self.shift_days.get(owner, 0))).year

    def text(self, v: str | None, owner: str | None) -> str | None:
        return None if v is None else self.scrub(v, owner)

    def node(self, n: Node) -> Node:
        owner = n.patient_id
        return replace(
            n,
            id=self.node_id(n.id),
            patient_id=None if owner is None else self.pid(owner),
            time=self.shift_time(n.time, owner),
            end=self.shift_time(n.end, owner),
            code=self.text(n.code, owner),
            system=self.text(n.system, owner),
            display=self.text(n.display, owner),
            unit=self.text(n.unit, owner),
            props=self.props(n.props, owner),
            source=None,
        )

    def edge(self, e: Edge) -> Edge:
        owner = e.patient_id
        return Edge(src=self.node_id(e.src), rel=e.rel, dst=self.node_id(e.dst),
                    patient_id=None if owner is None else self.pid(owner), props=self.props(e.props, owner))

    def as_of(self, t: datetime | None) -> datetime | None:
        if t is None or len(self.patients) != 1:
            return None
        return self.shift_time(t, self.patients[0])


def deidentify(g: Subgraph, *, salt: str) -> Subgraph:
    """A copy of ``g`` safe to share under this policy (every field and property is covered):

    * **Ids.** Patient ids become ``sha256(salt|id)[:16]``, patient-owned node ids
      ``"n" + sha256(salt|id)[:20]`` (stable for one salt, so exports of one patient link up);
      shared vocabulary nodes (``Concept/…``, ``Gene/…``) keep theirs. ``source`` is removed.
    * **Identifying and free-text properties are dropped**: names, addresses, telecom,
      identifiers, notes, comments, descriptions, titles, ``value_string`` and any key containing
      ``name``/``address``/``phone``/``email``/``identifier``/``telecom``.
    * **Files.** ``file_path`` is dropped; ``file``/``files`` become ``file-<salted hash><suffix>``
      (no folder, no original file name).
    * **Secrets are scrubbed everywhere.** Every patient id, node id, resource id, source and
      value of a dropped or file property (and each 4+-letter word of a name) is replaced by
      its pseudonym wherever it still occurs: in any string property at any depth, in keys, in
      ``code``/``system``/``display``/``unit``. Secrets shorter than 4 characters are replaced
      only where a whole value equals them.
    * **Dates are shifted per patient.** Every datetime (``time``, ``end``) and every
      ``YYYY-MM-DD`` inside any string moves by that patient's whole number of days: the date
      span of the export plus 1 to 3653 days from a salted hash of the patient id, backwards
      (forwards only for dates near year 1). Intervals and ages within a patient survive
      exactly (times of day too); every shifted date lies outside the range of the real dates,
      so no real date string survives. ``birth_date`` keeps its precision (year, year-month or
      date, shifted) and ``birth_year`` follows it. The offset depends on the export's span, so
      two exports of one patient may be shifted differently. ``as_of`` is shifted with the
      patient's dates for a one-patient graph and dropped otherwise.

    Numbers (lab values, doses) and codes are kept. A date written in another form than ISO
    (``20200101``) inside a property that is kept is not recognised.

    Raises:
        QueryError: the dates span so many years that no shift keeps them apart.
    """
    d = _Deidentifier(g, salt)
    return Subgraph(nodes=[d.node(n) for n in g.nodes], edges=[d.edge(e) for e in g.edges], as_of=d.as_of(g.as_of))


