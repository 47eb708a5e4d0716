"""A small convolutional autoencoder trained self-supervised on the cohort's images.

No pretrained weights can be downloaded, so image embeddings are learned from the training
cohort's own pixel files (``.npy`` arrays, any 2-D or 3-D shape): each image is resized to
``size x size``, standardised with the cohort's pixel mean/std (so brightness carries
information), and compressed to ``dim`` numbers by the encoder half.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from graph.errors import TwinError
from graph.schema import Node
from twin.features.records import image_path

__all__ = ["ImageAutoencoder", "ImageEncoder", "load_pixels"]

log = logging.getLogger(__name__)


def load_pixels(path: Path, size: int) -> Tensor:
    """``[1, size, size]`` float tensor of an image file (``.npy``; channels averaged).

    Raises :class:`TwinError` naming the file when it cannot be read as a numeric array.
    """
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TwinError(f"image file {path}: cannot be read as a .npy array ({exc})") from exc
    arr = np.asarray(arr, dtype=np.float32)
    while arr.ndim > 2:  # channels first or last: average the smallest axis
        arr = arr.mean(axis=int(np.argmin(arr.shape)))
    if arr.ndim != 2 or min(arr.shape) < 2 or not np.isfinite(arr).all():
        raise TwinError(f"image file {path}: expected a finite 2-D (or 3-D) array, got shape {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr))[None, None]
    return nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0]


class ImageAutoencoder(nn.Module):
    """Conv encoder ``[B, 1, 32, 32] -> [B, dim]`` and a mirror decoder."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.GELU(),      # 16x16
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.GELU(),     # 8x8
            nn.Flatten(), nn.Linear(16 * 8 * 8, dim))
        self.dec = nn.Sequential(
            nn.Linear(dim, 16 * 8 * 8), nn.GELU(), nn.Unflatten(1, (16, 8, 8)),
            nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1), nn.GELU(),   # 16x16
            nn.ConvTranspose2d(8, 1, 4, stride=2, padding=1))                # 32x32

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.enc(x)
        return z, self.dec(z)


class ImageEncoder:
    """Fits the autoencoder on a cohort's image files and embeds Image nodes (with a cache)."""

    size = 32

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.net = ImageAutoencoder(dim)
        self.pixel_mean, self.pixel_std = 0.0, 1.0
        self.fitted = False
        self._cache: dict[str, np.ndarray | None] = {}

    def fit(self, paths: Sequence[Path], *, epochs: int = 30, seed: int = 0, batch_size: int = 32) -> float:
        """Train on the images at ``paths`` (unreadable files are skipped); returns final MSE."""
        imgs = []
        for p in paths:
            try:
                imgs.append(load_pixels(p, self.size))
            except TwinError as exc:
                log.warning("skipping image for the autoencoder: %s", exc)
        if not imgs:
            return float("nan")
        x = torch.stack(imgs)
        self.pixel_mean, self.pixel_std = float(x.mean()), float(x.std().clamp(min=1e-6))
        x = (x - self.pixel_mean) / self.pixel_std
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.net = ImageAutoencoder(self.dim)
        opt = torch.optim.Adam(self.net.parameters(), lr=3e-3)
        loss = torch.tensor(float("nan"))
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), batch_size):
                xb = x[perm[i: i + batch_size]]
                _, rec = self.net(xb)
                loss = nn.functional.mse_loss(rec, xb)
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.fitted = True
        self._cache.clear()
        return float(loss.detach())

    @torch.no_grad()
    def embed_path(self, path: Path) -> np.ndarray | None:
        key = str(path)
        if key not in self._cache:
            try:
                x = (load_pixels(path, self.size) - self.pixel_mean) / self.pixel_std
                self._cache[key] = self.net.eval().enc(x[None])[0].numpy().astype(np.float32)
            except TwinError as exc:
                log.warning("image left without an embedding: %s", exc)
                self._cache[key] = None
        return self._cache[key]

    def __call__(self, node: Node) -> np.ndarray | None:
        """Embedding of an Image node: a stored ``props["embedding"]`` or one computed from its file."""
        stored = node.props.get("embedding")
        if isinstance(stored, list) and len(stored) == self.dim:
            return np.asarray(stored, np.float32)
        if not self.fitted:
            return None
        p = image_path(node)
        return None if p is None or not p.exists() else self.embed_path(p)

    def state(self) -> dict[str, Any]:
        return {"dim": self.dim, "fitted": self.fitted, "pixel_mean": self.pixel_mean, "pixel_std": self.pixel_std,
                "net": self.net.state_dict()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ImageEncoder:
        enc = cls(int(state["dim"]))
        enc.net.load_state_dict(state["net"])
        enc.fitted, enc.pixel_mean, enc.pixel_std = bool(state["fitted"]), float(state["pixel_mean"]), float(state["pixel_std"])
        return enc
