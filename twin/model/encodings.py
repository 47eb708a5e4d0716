"""Graphs and member encodings of recently seen patients, so a repeated forecast skips them.

Entries are keyed by a fingerprint of the patient's records *as of the origin* (every node,
edge and gene link, and the origin itself), not by a store version: a write to that patient
changes what is read and therefore the key, whichever process wrote it, and a write to another
patient changes nothing. A stale entry can never be returned; it just ages out of the LRU.
Keys also name the stacked members the encodings came from, so retraining in place (new
weights) misses the cache too. Image pixels are read from the files the image records point
to: a file rewritten under the same record is not noticed (records are the unit of change).
"""

from __future__ import annotations

import hashlib
import pickle
import threading
from collections import OrderedDict
from collections.abc import Sequence

from torch_geometric.data import Batch, HeteroData

from twin.features import FeatureSpec, PatientRecords, build_graph
from twin.features.hetero import ImageEmbedder
from twin.model.stacked import StackedMembers
from twin.model.twin_model import Encoded

__all__ = ["EncodingCache", "records_fingerprint"]


def records_fingerprint(records: PatientRecords) -> str:
    """A digest of everything :func:`twin.features.build_graph` reads from ``records``.

    The pickle of plain tuples of every node's and edge's fields: it determines them (it can be
    read back), so different records never share a digest; equal records built differently
    (a ``props`` mapping in another key order) may differ, which only costs a cache miss. A
    third of the time of the fields' ``repr``."""
    doc = (records.patient_id, records.as_of,
           [(n.id, n.type.value, n.patient_id, n.time, n.end, n.code, n.system, n.display, n.value, n.unit,
             dict(n.props), n.source) for n in records.nodes],
           [(e.src, e.rel.value, e.dst, e.patient_id, dict(e.props)) for e in records.edges],
           sorted((records.genes or {}).items()))
    return hashlib.blake2b(pickle.dumps(doc, protocol=5), digest_size=16).hexdigest()


class EncodingCache:
    """A thread-safe LRU of ``(graph, encodings)`` per (stacked members, records fingerprint).

    Example::

        graph, enc = cache.get(stacked, records, t0, spec, image_encoder)
    """

    def __init__(self, max_entries: int = 2048) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[int, str], tuple[HeteroData, list[Encoded]]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, stacked: StackedMembers, records: PatientRecords, spec: FeatureSpec,
            image_embed: ImageEmbedder | None) -> tuple[HeteroData, list[Encoded]]:
        """The as-of graph of ``records`` (cut at their ``as_of``) and every member's encoding of it."""
        assert records.as_of is not None, "records must be read as of an origin"
        key = (id(stacked), records_fingerprint(records))
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return hit
            self.misses += 1
        graph = build_graph(records, records.as_of, spec, image_embed)
        value = (graph, stacked.encode(graph.to(stacked.field.pk_rate.device)))
        self._put(key, value)
        return value

    def get_many(self, stacked: StackedMembers, records: Sequence[PatientRecords], spec: FeatureSpec,
                 image_embed: ImageEmbedder | None) -> list[list[Encoded]]:
        """Every member's encodings of each of ``records`` (one graph row each, in order): what
        :meth:`get` gives, with the graphs not cached encoded in one batch and a patient
        repeated in ``records`` built once."""
        keys = [(id(stacked), records_fingerprint(r)) for r in records]
        out: dict[tuple[int, str], list[Encoded]] = {}
        todo: dict[tuple[int, str], PatientRecords] = {}
        with self._lock:
            for key, rec in zip(keys, records, strict=True):
                hit = self._entries.get(key)
                if hit is not None:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    out[key] = hit[1]
                elif key not in todo:
                    self.misses += 1
                    todo[key] = rec
        if todo:
            graphs = []
            for r in todo.values():
                assert r.as_of is not None, "records must be read as of an origin"
                graphs.append(build_graph(r, r.as_of, spec, image_embed))
            enc = stacked.encode(Batch.from_data_list(graphs).to(stacked.field.pk_rate.device))
            for i, (key, graph) in enumerate(zip(todo, graphs, strict=True)):
                mine = [e.rows(i, i + 1) for e in enc]
                out[key] = mine
                self._put(key, (graph, mine))
        return [out[k] for k in keys]

    def _put(self, key: tuple[int, str], value: tuple[HeteroData, list[Encoded]]) -> None:
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
