"""Training a named model into the registry, in this process (CLI) or in a child process (API).

A server must not train inside its request process: training changes torch's process state
(threads, allocator, RNG) and holds the GIL for minutes. :func:`train_isolated` runs the same
:func:`train_model` in a fresh ``spawn`` process with its own thread setting and streams its
progress back; the parent only relays messages.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from dataclasses import asdict
from typing import Any

from core import ConfigError, ModelError, TwinError
from graph import GraphStore, open_store
from service.cancel import Cancelled, CancelToken, ProgressFn
from service.registry import ModelRegistry
from service.runtime import DEFAULT_TORCH_THREADS, set_torch_threads

__all__ = ["ProgressFn", "train_config", "train_isolated", "train_model"]

_POLL_S = 0.5


def train_config(**overrides: Any) -> Any:
    """A :class:`twin.TrainConfig` from its defaults and ``overrides`` (unknown names are refused)."""
    from twin import TrainConfig

    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown training setting(s) {unknown}")
    return TrainConfig(**overrides)


def train_model(store: GraphStore, registry: ModelRegistry, name: str, config: Any, *, replace: bool = True,
                on_progress: ProgressFn | None = None, distributed: bool = False) -> dict[str, Any]:
    """Train ``config`` on every patient of ``store`` into registry model ``name``; the report.

    ``distributed``: this process is one rank of a ``torchrun`` launch (data-parallel training,
    :func:`twin.train`); rank 0 writes the model."""
    from twin import train

    out = registry.path_for(name)
    if not replace and out.is_file():
        raise ModelError(f"model {name!r} exists; pass replace to overwrite it")
    report = train(store, config, out, on_progress=on_progress, distributed=distributed).to_dict()
    report.pop("members", None)
    report["checkpoint"] = name  # the model's name, never a server path
    return report


def _child(store_url: str, root: str, name: str, config: dict[str, Any], threads: int, out: Any) -> None:
    try:
        set_torch_threads(threads)
        with open_store(store_url) as store:
            report = train_model(store, ModelRegistry(root), name, train_config(**config),
                                 on_progress=lambda f, m: out.put(("progress", f, m)))
        out.put(("done", report))
    except TwinError as exc:
        out.put(("error", type(exc).__name__, str(exc)))
    except BaseException as exc:  # a bug: report its type only (messages may hold data)
        out.put(("crash", type(exc).__name__, ""))


def train_isolated(store_url: str, registry: ModelRegistry, name: str, config: Any, *,
                   threads: int = DEFAULT_TORCH_THREADS, on_progress: ProgressFn | None = None,
                   cancel: CancelToken | None = None) -> dict[str, Any]:
    """:func:`train_model` in a child process (the store is reopened there from ``store_url``).

    ``cancel`` (checked every poll, ~0.5 s) kills the child and raises :class:`~service.cancel.Cancelled`;
    so does an ``on_progress`` that raises. The registry is untouched: the child writes its
    checkpoint atomically at the end, so a killed run leaves no partial model."""
    if store_url.startswith("memory:"):
        raise ConfigError("training in a separate process needs a persistent store (sqlite:/// or bolt://)")
    registry.check_name(name)
    cfg = asdict(config) if not isinstance(config, dict) else config
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    proc = ctx.Process(target=_child, args=(store_url, str(registry.root), name, cfg, threads, messages),
                       name=f"twin-train-{name}", daemon=True)
    proc.start()
    stopped = False
    try:
        while True:
            if cancel is not None:
                cancel.check()
            try:
                msg = messages.get(timeout=_POLL_S)
            except queue.Empty:
                if not proc.is_alive():
                    raise TwinError(f"the training process stopped unexpectedly (exit code {proc.exitcode})") from None
                continue
            if msg[0] == "progress":
                if on_progress:
                    on_progress(msg[1], msg[2])
            elif msg[0] == "done":
                return msg[1]
            elif msg[0] == "error":
                raise TwinError(msg[2])
            else:
                raise TwinError(f"training failed with an internal error ({msg[1]})")
    except Cancelled:
        stopped = True
        raise
    finally:
        if stopped and proc.is_alive():
            proc.kill()
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
        messages.close()
