"""The layers SAL is defined on, and a model split around one of them (the speed of :mod:`~miue.sal.measure`).

:func:`sal_layers` lists a model's Conv2d and Linear layers. For one layer, the network is traced once with
``torch.fx``; the part of the graph that does not depend on the layer is computed once (no grad) and cached
(:class:`_Batches`), and each pass re-runs only the dependent suffix (:class:`_Split`). Every other conv is
folded with its eval-mode BatchNorm. Untraceable models fall back to full eager passes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..train import as_float

CACHE_BYTES = 1 << 30  # cache prefix activations only while they fit in this budget


def sal_layers(model: nn.Module) -> list[str]:
    """Names of the Conv2d and Linear modules of ``model`` (the layers SAL is defined on), in order."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight is not None]


# ---------------------------------------------------------------- graph split: cached prefix, re-run suffix


def _trace(model: nn.Module):
    """``torch.fx`` trace of ``model`` (sharing its modules), or None when the model is not traceable."""
    class Tracer(torch.fx.Tracer):  # every conv and batch norm a leaf, torch's own or a subclass
        def is_leaf_module(self, m, qualname):  # (StridedPointwiseConv, NarrowBatchNorm2d)
            return isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) or super().is_leaf_module(m, qualname)

    try:
        return torch.fx.GraphModule(model, Tracer().trace(model))
    except Exception:  # noqa: BLE001 - any tracing failure falls back to full forward passes
        return None


def _attr(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _foldable(gm) -> dict:
    """conv node → (its BatchNorm node, the conv with that eval-mode BN folded in) for every Conv2d whose only
    user is a BatchNorm2d with running statistics. The folded copies are frozen and never alias the model."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    out = {}
    if gm is None:
        return out
    calls = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            calls[n.target] = calls.get(n.target, 0) + 1
    for n in gm.graph.nodes:
        if n.op != "call_module" or not isinstance(_attr(gm, n.target), nn.Conv2d) or len(n.users) != 1:
            continue
        b = next(iter(n.users))
        if b.op != "call_module" or len(b.args) != 1 or b.kwargs or calls[n.target] + calls[b.target] != 2:
            continue
        bn = _attr(gm, b.target)
        if not isinstance(bn, nn.BatchNorm2d) or bn.training or bn.running_mean is None:
            continue
        conv = _attr(gm, n.target)
        with torch.no_grad():
            fused = fuse_conv_bn_eval(conv, bn).requires_grad_(False)
            fused.weight.data = fused.weight.data.contiguous(memory_format=torch.channels_last)
        out[n] = (b, fused)
    return out


class _Split:
    """``model`` as prefix (independent of layer ``name``, run once) and suffix (re-run per pass).

    Every other conv is folded with its BN (eval mode: an exact affine map, up to float rounding), so a pass
    runs fewer ops; layer ``name`` itself stays unfolded, so the perturbation is of its own weight.
    """

    def __init__(self, model: nn.Module, gm, name: str, fold: dict | None = None):
        self.model = model
        if gm is None:
            self.prefix, self.suffix, self.n_front = None, model, 1
            return
        fold = {c: v for c, v in (fold or {}).items() if c.target != name}
        alias = {b: c for c, (b, _) in fold.items()}  # a folded BN's output is its conv's output
        nodes = [n for n in gm.graph.nodes if n not in alias]
        inputs = lambda n: [alias.get(a, a) for a in n.all_input_nodes]
        dep = set()
        for n in nodes:
            if n.op == "output":
                continue
            if (n.op == "call_module" and n.target == name) or any(a in dep for a in inputs(n)):
                dep.add(n)
        out = next(n for n in nodes if n.op == "output")
        order = [n for n in nodes if n in dep]
        front = []
        for n in order + [out]:
            for a in inputs(n):
                if a not in dep and a not in front:
                    front.append(a)
        need, stack = set(), list(front)  # ancestors of the frontier: what the prefix must compute
        while stack:
            n = stack.pop()
            if n not in need:
                need.add(n)
                stack.extend(inputs(n))
        place = [n for n in nodes if n.op == "placeholder"]
        modules = {}
        for n in gm.graph.nodes:
            if n.op in ("call_module", "get_attr"):
                modules[n.target] = fold[n][1] if n in fold else _attr(gm, n.target)
        self.prefix = _subgraph(modules, alias, place, [n for n in nodes if n in need and n.op != "placeholder"],
                                tuple(front))
        self.suffix = _subgraph(modules, alias, front, order, out.args[0])
        self.n_front = len(front)

    def front(self, x: torch.Tensor) -> tuple:
        if self.prefix is None:
            return (x,)
        with torch.no_grad():
            return tuple(self.prefix(x))


def _subgraph(modules: dict, alias: dict, inputs, nodes, outputs):
    g = torch.fx.Graph()
    env = {n: g.placeholder(f"in_{i}") for i, n in enumerate(inputs)}
    arg = lambda a: env[alias.get(a, a)]
    for n in nodes:
        env[n] = g.node_copy(n, arg)
    g.output(torch.fx.node.map_arg(outputs, arg))
    return torch.fx.GraphModule(modules, g)


class _Batches:
    """The fixed data as chunks, each with its cached prefix activations (recomputed when too large)."""

    def __init__(self, split: _Split, images, labels, device, chunk: int):
        self.split, self.device = split, device
        self.chunks = [(images[i:i + chunk], labels[i:i + chunk].to(device)) for i in range(0, len(labels), chunk)]
        self.n = len(labels)
        self.cache = None
        first = self._front(0)
        size = sum(t.numel() * t.element_size() for t in first if isinstance(t, torch.Tensor))
        if size * len(self.chunks) <= CACHE_BYTES:
            self.cache = [first] + [self._front(i) for i in range(1, len(self.chunks))]
        self.versions = self._versions()
        self.clone = False

    def _versions(self):
        return None if self.cache is None else [[t._version for t in f if isinstance(t, torch.Tensor)]
                                                for f in self.cache]

    def _front(self, i: int) -> tuple:
        x = as_float(self.chunks[i][0], self.device).contiguous(memory_format=torch.channels_last)
        return self.split.front(x)

    def front(self, i: int) -> tuple:
        if self.cache is None:
            return self._front(i)
        f = self.cache[i]
        # an in-place op of the suffix on a cached tensor would corrupt the cache: detect it, then clone
        return tuple(t.clone() if self.clone and isinstance(t, torch.Tensor) else t for t in f)

    def check_cache(self) -> None:
        """After the first suffix run: rebuild the cache (and clone from then on) if the suffix wrote into it."""
        if self.cache is not None and self._versions() != self.versions:
            self.cache = [self._front(i) for i in range(len(self.chunks))]
            self.versions = self._versions()
            self.clone = True

    def loss(self, weight: torch.Tensor | None = None, idx=None):
        """Mean cross-entropy over the data (or the chunks ``idx``), with its gradient w.r.t. ``weight``."""
        idx = range(len(self.chunks)) if idx is None else idx
        total, grad, count = 0.0, None, 0
        for i in idx:
            y = self.chunks[i][1]
            with torch.set_grad_enabled(weight is not None):
                out = self.split.suffix(*self.front(i))
                loss = F.cross_entropy(out.float(), y, reduction="sum")
            if weight is not None:
                (g,) = torch.autograd.grad(loss, weight)
                grad = g if grad is None else grad + g
            total += loss.item()
            count += len(y)
        self.check_cache()
        return total / count, (None if grad is None else grad / count)
