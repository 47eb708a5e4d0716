"""Heterogeneous GNN encoder: an as-of patient graph -> latent initial state ``z0`` and context.

Typed input projections (node features + learnable concept / gene embeddings, so codes
carry meaning across patients) feed ``layers`` rounds of ``HeteroConv`` with a
``SAGEConv`` per edge type and residual connections; the patient node and a mean pool of
every node type are concatenated into the posterior ``q(z0) = N(mu, diag(exp(logvar)))``
and a static context ``s``.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import HeteroConv, SAGEConv
from torch_geometric.utils import scatter

from twin.features.hetero import EVENT_NODE_TYPES, edge_types

__all__ = ["HeteroPatientEncoder"]

NODE_TYPES = ("patient", *EVENT_NODE_TYPES.values())


class HeteroPatientEncoder(nn.Module):
    r"""Encode a batch of patient graphs.

    Args:
        dims (dict[str, int]): feature width per node type (:func:`twin.features.node_dims`).
        n_concepts (int): size of the concept vocabulary (index 0 = unknown).
        n_genes (int): size of the gene vocabulary (index 0 = unknown).
        hidden (int), latent (int), static (int), layers (int): sizes.

    Shapes:
        input: a ``Batch`` of B graphs built by :func:`twin.features.build_graph`.
        output: ``mu`` ``[B, latent]``, ``logvar`` ``[B, latent]``, ``s`` ``[B, static]``.
    """

    def __init__(self, dims: dict[str, int], n_concepts: int, n_genes: int, hidden: int, latent: int,
                 static: int, layers: int) -> None:
        super().__init__()
        self.hidden, self.latent = hidden, latent
        self.inp = nn.ModuleDict({t: nn.Linear(dims[t], hidden) for t in NODE_TYPES})
        self.concept = nn.Embedding(n_concepts, hidden)
        self.gene = nn.Embedding(n_genes, hidden)
        nn.init.normal_(self.concept.weight, std=0.1)
        nn.init.normal_(self.gene.weight, std=0.1)
        self.convs = nn.ModuleList(
            HeteroConv({et: SAGEConv(hidden, hidden) for et in edge_types()}, aggr="sum") for _ in range(layers))
        self.norms = nn.ModuleList(nn.ModuleDict({t: nn.LayerNorm(hidden) for t in NODE_TYPES}) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(hidden * len(NODE_TYPES), 2 * hidden), nn.GELU(),
                                  nn.Linear(2 * hidden, 2 * latent + static))

    def embed(self, batch: Batch) -> dict[str, Tensor]:
        """Initial node embeddings ``h0`` per node type (inputs of attribution methods)."""
        h: dict[str, Tensor] = {}
        for t in NODE_TYPES:
            x = self.inp[t](batch[t].x)
            if t != "patient":
                x = x + self.concept(batch[t].cid)
            if t == "variant":
                x = x + self.gene(batch[t].gid)
            h[t] = x
        return h

    def propagate(self, h0: dict[str, Tensor], batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """Message passing from ``h0`` and pooling to ``(mu, logvar, s)``."""
        h = {t: torch.nn.functional.gelu(x) for t, x in h0.items()}
        for conv, layer_norms in zip(self.convs, self.norms, strict=True):
            norms = cast(nn.ModuleDict, layer_norms)  # ModuleList yields plain Modules; each entry is a ModuleDict
            out = conv(h, batch.edge_index_dict)
            h = {t: norms[t](h[t] + torch.nn.functional.gelu(out[t])) if t in out else h[t] for t in h}
        n = batch["patient"].x.shape[0]
        pooled = [h["patient"]]
        for t in NODE_TYPES[1:]:
            idx = batch[t].batch if h[t].shape[0] else torch.zeros(0, dtype=torch.long, device=h[t].device)
            pooled.append(scatter(h[t], idx, dim=0, dim_size=n, reduce="mean"))
        out = self.head(torch.cat(pooled, dim=-1))
        mu, logvar, s = out.split([self.latent, self.latent, out.shape[-1] - 2 * self.latent], dim=-1)
        return mu, logvar.clamp(-8.0, 4.0), torch.tanh(s)

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        return self.propagate(self.embed(batch), batch)
