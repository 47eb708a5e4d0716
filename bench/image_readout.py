"""How much of the kidney state the image embeddings carry (one command).

    PYTHONPATH=. .venv/bin/python bench/image_readout.py

Renders synthetic renal ultrasounds (``synthetic.images``) for random structural eGFR
and HbA1c values, fits the image encoder on the first two thirds, and prints the held-out
RMSE of a least-squares linear read-out of the structural eGFR from: the autoencoder code
alone, the first-order statistics alone, and the whole embedding. Writes
``bench/results/image_readout.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthetic.images import render_kidney  # noqa: E402
from twin.image_encoder import ImageEncoder  # noqa: E402


def readout_rmse(x: np.ndarray, y: np.ndarray, n_fit: int) -> float:
    """Held-out RMSE of a least-squares line (with intercept) from ``x`` to ``y``."""
    a = np.c_[x, np.ones(len(x))]
    w = np.linalg.lstsq(a[:n_fit], y[:n_fit], rcond=None)[0]
    return float(np.sqrt(np.mean((a[n_fit:] @ w - y[n_fit:]) ** 2)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=900)
    ap.add_argument("--epochs", type=int, default=30, help="autoencoder epochs (the training default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "image_readout.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    egfr = rng.uniform(15.0, 120.0, args.images)
    hba1c = rng.uniform(5.0, 10.0, args.images)
    n_fit = args.images * 2 // 3
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.images):
            paths.append(Path(tmp) / f"k{i}.npy")
            np.save(paths[-1], render_kidney(float(egfr[i]), float(hba1c[i]), float(rng.uniform(0, 2 * np.pi)), rng))
        enc = ImageEncoder()
        enc.fit(paths[:n_fit], epochs=args.epochs, seed=args.seed)
        emb = np.stack([enc.embed_path(p) for p in paths])
    k = enc.code_dim
    res = {
        "images": args.images, "held_out": args.images - n_fit, "egfr_struct_sd": float(egfr[n_fit:].std()),
        "rmse": {"autoencoder_code": readout_rmse(emb[:, :k], egfr, n_fit),
                 "first_order_stats": readout_rmse(emb[:, k:], egfr, n_fit),
                 "embedding": readout_rmse(emb, egfr, n_fit)},
        "seconds": time.perf_counter() - t0,
    }
    print(f"linear read-out of structural eGFR (sd {res['egfr_struct_sd']:.1f}) on {res['held_out']} held-out images:")
    for name, v in res["rmse"].items():
        print(f"  {name:18s} RMSE {v:6.2f} mL/min/1.73 m2")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out} in {res['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
