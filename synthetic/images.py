"""Synthetic renal ultrasound images whose content follows the hidden kidney state.

A 32x32 float32 array: an elliptical kidney whose long axis shrinks as structural eGFR
falls, whose cortex gets brighter (echogenic) and more heterogeneous with kidney damage
and hyperglycaemia, and a dark cortical lesion whose radius grows as eGFR falls below 90.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IMAGE_SIZE", "kidney_features", "render_kidney"]

IMAGE_SIZE = 32
_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64)


def kidney_features(egfr_struct: float, hba1c: float) -> dict[str, float]:
    """Ground-truth image features: long semi-axis (px), cortex brightness, texture sd, lesion radius (px)."""
    health = float(np.clip(egfr_struct / 120.0, 0.05, 1.0))
    return {
        "axis": 6.0 + 7.0 * health,
        "brightness": 0.45 + 0.35 * (1.0 - health) + 0.03 * float(np.clip(hba1c - 6.0, 0.0, 5.0)),
        "texture": 0.04 + 0.18 * (1.0 - health),
        "lesion_radius": 1.0 + 4.0 * float(np.clip((90.0 - egfr_struct) / 80.0, 0.0, 1.0)),
    }


def render_kidney(egfr_struct: float, hba1c: float, lesion_angle: float, rng: np.random.Generator) -> np.ndarray:
    """Render one image; ``lesion_angle`` (radians) fixes where the lesion sits for this patient."""
    ft = kidney_features(egfr_struct, hba1c)
    c, theta = (IMAGE_SIZE - 1) / 2.0, 0.35
    dx, dy = _XX - c, _YY - c
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    a, b = ft["axis"], 0.55 * ft["axis"]
    r2 = (u / a) ** 2 + (v / b) ** 2
    img = 0.10 + 0.03 * rng.standard_normal((IMAGE_SIZE, IMAGE_SIZE))
    kidney = r2 <= 1.0
    sinus = r2 <= 0.25
    speckle = 1.0 + ft["texture"] * rng.standard_normal((IMAGE_SIZE, IMAGE_SIZE))
    img = np.where(kidney, ft["brightness"] * speckle, img)
    img = np.where(sinus, 0.85 + 0.05 * rng.standard_normal((IMAGE_SIZE, IMAGE_SIZE)), img)
    lu, lv = 0.7 * a * np.cos(lesion_angle), 0.7 * b * np.sin(lesion_angle)
    lesion = (u - lu) ** 2 + (v - lv) ** 2 <= ft["lesion_radius"] ** 2
    img = np.where(lesion & kidney, 0.05 + 0.02 * rng.standard_normal((IMAGE_SIZE, IMAGE_SIZE)), img)
    return np.clip(img, 0.0, 1.0).astype(np.float32)
