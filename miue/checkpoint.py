"""Resumable state on disk as safetensors (never pickle): models, SGD buffers, RNG states, tensors.

A :class:`Checkpoint` is one file per run; ``save`` writes it atomically after each epoch (keeping the
previous one beside it) and ``load`` returns the newest *good* state (or None), so an interrupted run
continues where it stopped. A checkpoint that cannot be read or holds non-finite values is reported, set
aside as ``*.bad`` and the previous one is used; with none left the run restarts from the beginning.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file


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
    """Read what :func:`save_tensors` wrote: (tensors, meta).

    The file is read into memory: ``safetensors.torch.load_file`` memory-maps it, so its tensors would change
    when the file is overwritten in place (and a truncated file would crash the process on access)."""
    from safetensors.torch import load
    raw = Path(path).read_bytes()
    tensors = load(raw)  # validates the header and the data offsets; raises on a damaged file
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    meta = json.loads((header.get("__metadata__") or {}).get("meta", "{}"))
    return tensors, meta


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
        if self.path.exists():
            os.replace(self.path, self.previous)
        save_tensors(self.path, out, {"epoch": epoch, **(meta or {})})

    @property
    def previous(self) -> Path:
        return self.path.with_name(self.path.stem + ".prev" + self.path.suffix)

    def _read_good(self):
        """(state, meta) of the newest readable, finite checkpoint; bad files are set aside with a warning."""
        for path in (self.path, self.previous):
            if not path.exists():
                continue
            try:
                state, meta = load_tensors(path)
                if not isinstance(meta, dict) or "epoch" not in meta:
                    raise ValueError("no epoch in its metadata")
                epoch = meta["epoch"]
                if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                    raise ValueError(f"its epoch {epoch!r} is not a whole number >= 0")
                bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
                if bad:
                    raise ValueError(f"non-finite values in {bad[0]}")
            except FileNotFoundError:  # removed meanwhile
                continue
            except Exception as exc:  # noqa: BLE001 - any unreadable file is distrusted the same way
                try:
                    os.replace(path, path.with_name(path.name + ".bad"))
                except FileNotFoundError:
                    pass
                fallback = "resuming from the previous checkpoint" if path == self.path and self.previous.exists() \
                    else "no good checkpoint is left: the run restarts from the beginning"
                warnings.warn(f"checkpoint {path} is unusable ({type(exc).__name__}: {exc}); set aside as "
                              f"{path.name}.bad, {fallback}", stacklevel=3)
                continue
            return state, meta
        return None

    def saved_epoch(self) -> int | None:
        """The epoch of the newest good checkpoint (None when there is none)."""
        found = self._read_good()
        return None if found is None else found[1]["epoch"]

    def load(self, *, model=None, optimizer=None, generators=None, device="cpu"):
        """Restore state in place; returns (epoch, tensors, meta) or None when there is no checkpoint."""
        found = self._read_good()
        if found is None:
            return None
        state, meta = found
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
        self.previous.unlink(missing_ok=True)
