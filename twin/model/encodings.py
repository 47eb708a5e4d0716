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
import threading
from collections import OrderedDict

from torch_geometric.data import HeteroData

from twin.features import FeatureSpec, PatientRecords, build_graph
from twin.features.hetero import ImageEmbedder
from twin.model.stacked import StackedMembers
from twin.model.twin_model import Encoded

__all__ = ["EncodingCache", "records_fingerprint"]


def records_fingerprint(records: PatientRecords) -> str:
    """A digest of everything :func:`twin.features.build_graph` reads from ``records``."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((records.patient_id, records.as_of, records.nodes, records.edges,
                   sorted((records.genes or {}).items()))).encode())
    return h.hexdigest()


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
        device = stacked.field.pk_rate.device
        value = (graph, stacked.encode(graph.to(device)))
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
