"""Resumable state on disk as safetensors (never pickle): models, SGD buffers, RNG states, tensors.

A :class:`Checkpoint` is one file per run; ``save`` writes it atomically after each epoch and ``load``
returns the newest state (or None), so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _atomic_save(tensors: dict[str, torch.Tensor], meta: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)})
    os.replace(tmp, path)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    """Write ``tensors`` and a JSON-able ``meta`` dict to ``path`` (safetensors), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save(tensors, meta or {}, path)


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read what :func:`save_tensors` wrote: (tensors, meta)."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("meta", "{}"))
    return load_file(str(path)), meta


class Checkpoint:
    """Per-epoch state of one run: model weights, SGD momentum, generator states and extra tensors."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def save(self, epoch: int, *, model=None, optimizer=None, generators=None, tensors=None, meta=None) -> None:
        out: dict[str, torch.Tensor] = {}
        if model is not None:
            out.update({f"model.{k}": v for k, v in model.state_dict().items()})
        if optimizer is not None:
            for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"]):
                buf = optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    out[f"optim.{i}"] = buf
        for name, g in (generators or {}).items():
            out[f"rng.{name}"] = g.get_state()
        out.update({f"t.{k}": v for k, v in (tensors or {}).items()})
        save_tensors(self.path, out, {"epoch": epoch, **(meta or {})})

    def load(self, *, model=None, optimizer=None, generators=None, device="cpu"):
        """Restore state in place; returns (epoch, tensors, meta) or None when there is no checkpoint."""
        if not self.path.exists():
            return None
        try:
            state, meta = load_tensors(self.path)
        except Exception:  # a half-written or foreign file is not trusted
            return None
        if model is not None:
            model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        if optimizer is not None:
            for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"]):
                if f"optim.{i}" in state:
                    optimizer.state[p]["momentum_buffer"] = state[f"optim.{i}"].to(p.device)
        for name, g in (generators or {}).items():
            if f"rng.{name}" in state:
                g.set_state(state[f"rng.{name}"])
        tensors = {k[2:]: v.to(device) for k, v in state.items() if k.startswith("t.")}
        return meta["epoch"], tensors, meta

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
