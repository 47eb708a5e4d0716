"""Process-wide settings that belong to the process owner (the CLI's ``main``, a server worker,
a training subprocess), never to a library call.

torch's default of one thread per core makes the small per-step tensors of a twin slower,
not faster (they spend the time synchronising): a forecast took ~8x longer with 2 threads
than with 1 on the 2-core reference machine. Each entry point therefore sets the count
explicitly with :func:`set_torch_threads`.
"""

from __future__ import annotations

__all__ = ["DEFAULT_TORCH_THREADS", "set_torch_threads"]

#: Threads per process for torch's intra-op pool (CLI ``--threads``, setting ``torch_threads``).
DEFAULT_TORCH_THREADS = 1


def set_torch_threads(threads: int = DEFAULT_TORCH_THREADS) -> None:
    """Set torch's intra-op thread count for this process (call once, at the entry point)."""
    import torch

    if threads < 1:
        raise ValueError(f"torch threads must be >= 1, got {threads}")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
