"""Sharpness-aware learnability (SAL) and the unlearnable distance (UD) of "How Far Are We from True
Unlearnability?" (SAL/UD paper, Sec. 3.3-4, Eq. 3-5, Algorithm 1).

* SAL (Eq. 3) of one Conv2d/Linear layer l of a network θ, all other layers frozen:
  ``SAL(θ_l, ε, t) = max_{‖v‖₂ ≤ ε‖θ_l‖₂} |L(θ_l + v) − L(θ_l)|`` on the training data. The maximum is
  searched as in the paper's protocol: ``steps`` SGD passes (lr 0.1) over the data, once ascending and once
  descending the loss, each pass followed by a projection onto the relative L2 ball; SAL is the larger
  |Δloss| reached by any iterate of either direction (so SAL ≥ 0). Only the layer's weight is perturbed.
* Learnable threshold β (Eq. 4): per measured epoch, 2-means of the clean model's layer SALs; β is the mean
  of the two centres, averaged over the epochs.
* #LP and UD (Eq. 5): λ(t) is the number of layers whose SAL exceeds β at epoch t; #LP is its mean over the
  measured epochs ("average number of learnable parameters", where a "parameter" is a layer's weight tensor
  θ_l, as in Eq. 3); UD = #LP(poisoned) / #LP(clean).

:func:`sal_run` trains a victim and measures the SAL of every layer every ``p.sal_every`` epochs, as a stored
run (kind ``"sal"``); :func:`ud_table` turns such records into the paper's Table 1/3 columns.

Speed (the results are those of plain full forward/backward passes, up to float rounding; a test checks it):
a layer's SAL needs about 2·``steps`` forward/backward passes in which only that layer's weight changes. The
network is traced once with ``torch.fx``; for each layer, the part of the graph that does not depend on it is
computed once (no grad) and cached, and each pass re-runs only the dependent suffix. Every other conv is
folded with its eval-mode BatchNorm. The gradient at the unperturbed point is shared by both directions; with
full-batch passes (the default) each iterate's loss comes out of the next pass's forward; and the descent is
skipped when the ascent already exceeds the unperturbed loss (cross-entropy ≥ 0 bounds the descent by it).
Untraceable models fall back to full eager passes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from .progress import tqdm

from .specs import Spec, VictimSpec
from .train import as_float, resolve_device

EPS = 0.05  # relative L2 radius of the weight perturbation (SAL/UD Sec. 3.3)
LR = 0.1  # SGD learning rate of the perturbation search (paper code: --sharp_lr_min/max 0.1)
STEPS = 10  # passes per direction ("the iterative step for optimizing v is 10")
CHUNK = 1024  # images per forward chunk (memory only; results do not depend on it)
CACHE_BYTES = 1 << 30  # cache prefix activations only while they fit in this budget


def sal_layers(model: nn.Module) -> list[str]:
    """Names of the Conv2d and Linear modules of ``model`` (the layers SAL is defined on), in order."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight is not None]


def _check_data(images, labels) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) == 0:
        raise ValueError("images must be a non-empty N×C×H×W tensor (uint8 pixels or floats in [0, 1]), got "
                         f"{type(images).__name__} {tuple(getattr(images, 'shape', ()))}")
    if not isinstance(labels, torch.Tensor) or labels.shape != (len(images),) or labels.is_floating_point():
        raise ValueError(f"labels must be an integer tensor with one entry per image ({len(images)}), got "
                         f"{type(labels).__name__} {tuple(getattr(labels, 'shape', ()))}")


def _check_search(eps, steps, lr, batch_size) -> None:
    if not (isinstance(eps, (int, float)) and eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a positive number (relative L2 radius), got {eps!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None (full batch) or a positive integer, got {batch_size!r}")


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


# ---------------------------------------------------------------- SAL of one layer and of a model


def _project(v: torch.Tensor, radius: float) -> torch.Tensor:
    norm = v.norm()
    return v * (radius / norm) if norm > radius else v


def _layer_sal(split: _Split, batches: _Batches, weight: torch.Tensor, eps: float, steps: int, lr: float,
               batch_size: int | None) -> dict:
    theta = weight.detach().clone()
    radius = eps * theta.norm().item()
    minibatch = batch_size is not None and batch_size < batches.n
    try:
        l0, g0 = batches.loss(weight)
        result = {"loss": l0}
        for name, sign in (("ascent", 1.0), ("descent", -1.0)):
            if sign < 0 and result["ascent"] >= l0:  # cross-entropy >= 0: descent gains at most l0 (exact skip)
                result[name], result[f"reach_{name}"] = None, None
                continue
            v = torch.zeros_like(theta)
            best, reach, g = 0.0, 0.0, g0
            for k in range(steps):
                if minibatch:  # one SGD step per mini-batch, each projected (the paper's code projects per pass)
                    for j in range(len(batches.chunks)):
                        with torch.no_grad():
                            weight.copy_(theta + v)
                        _, gj = batches.loss(weight, [j])
                        v = _project(v + sign * lr * gj, radius)
                else:  # one full-batch step per pass
                    v = v + sign * lr * g
                v = _project(v, radius)
                reach = max(reach, v.norm().item() / max(theta.norm().item(), 1e-12))
                with torch.no_grad():
                    weight.copy_(theta + v)
                if not minibatch and k < steps - 1:
                    lk, g = batches.loss(weight)  # the iterate's loss and the next pass's gradient
                else:
                    lk, _ = batches.loss()
                best = max(best, sign * (lk - l0))
            result[name], result[f"reach_{name}"] = best, reach
        result["sal"] = max(result["ascent"], result["descent"] or 0.0)
        return result
    finally:
        with torch.no_grad():
            weight.copy_(theta)


def _chunking(images: torch.Tensor, labels: torch.Tensor, batch_size: int | None):
    if batch_size is None or batch_size >= len(labels):
        return CHUNK
    return batch_size


def layer_sal(model: nn.Module, layer: str, images: torch.Tensor, labels: torch.Tensor, *, eps: float = EPS,
              steps: int = STEPS, lr: float = LR, batch_size: int | None = None, device=None) -> dict:
    """SAL of one Conv2d/Linear layer (SAL/UD Eq. 3) on a fixed batch, no augmentation, BN in eval mode.

    Returns ``{"sal", "ascent", "descent", "loss", "reach_ascent", "reach_descent"}``: SAL = max(ascent,
    descent), the largest loss increase (decrease) any of the ``steps`` projected SGD passes reached, ``loss``
    the unperturbed mean cross-entropy and ``reach_*`` the largest ‖v‖/‖θ_l‖ used (≤ ``eps``). ``batch_size``
    None makes each pass one full-batch step; an integer makes it mini-batch SGD over the data, as in the
    paper's code (which projects once per pass; here every step is projected, so no weight outside the ball
    is ever evaluated). The model's weights and train/eval mode are restored exactly afterwards.
    """
    _check_data(images, labels)
    _check_search(eps, steps, lr, batch_size)
    names = sal_layers(model)
    if layer not in names:
        raise ValueError(f"layer {layer!r} is not a Conv2d/Linear layer of the model; layers are: {', '.join(names)}")
    return model_sal(model, images, labels, eps=eps, steps=steps, lr=lr, batch_size=batch_size, device=device,
                     layers=[layer], progress=False, details=True)[layer]


def model_sal(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float = EPS, steps: int = STEPS,
              lr: float = LR, device=None, *, layers: list[str] | None = None, batch_size: int | None = None,
              progress: bool = True, details: bool = False) -> dict:
    """SAL (Eq. 3) of every Conv2d/Linear layer (or of ``layers``): layer name → SAL (→ dict with ``details``).

    Each layer is perturbed alone (all others frozen) on the fixed ``images``/``labels`` with the model in
    eval mode; see :func:`layer_sal`. The model ends exactly as it started (weights, mode, device).
    """
    _check_data(images, labels)
    _check_search(eps, steps, lr, batch_size)
    names = sal_layers(model)
    if not names:
        raise ValueError("the model has no Conv2d/Linear layer to measure SAL on")
    layers = names if layers is None else list(layers)
    unknown = [n for n in layers if n not in names]
    if unknown:
        raise ValueError(f"not Conv2d/Linear layers of the model: {unknown}; layers are: {', '.join(names)}")
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    old_device = next(model.parameters()).device
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    modules = dict(model.named_modules())
    model.eval().to(device)
    out = {}
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        gm = _trace(model)
        fold = _foldable(gm)
        chunk = _chunking(images, labels, batch_size)
        for name in tqdm(layers, desc="SAL layers", disable=not progress, leave=False, mininterval=1.0):
            weight = modules[name].weight
            weight.requires_grad_(True)
            try:
                split = _Split(model, gm, name, fold)
                batches = _Batches(split, images, labels, device, chunk)
                res = _layer_sal(split, batches, weight, eps, steps, lr, batch_size)
            finally:
                weight.requires_grad_(False)
            out[name] = res if details else res["sal"]
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
        model.to(old_device).train(was_training)
    return out


# ---------------------------------------------------------------- threshold, #LP and UD (Eq. 4-5)


def _matrix(values) -> np.ndarray:
    """SAL values as an (epochs × layers) float array from an array, list of lists or list of dicts."""
    if isinstance(values, dict):
        values = [values]
    if isinstance(values, (list, tuple)) and values and isinstance(values[0], dict):
        keys = list(values[0])
        if any(set(v) != set(keys) for v in values):
            raise ValueError("every epoch's SAL dict must have the same layers")
        values = [[v[k] for k in keys] for v in values]
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.size == 0 or not np.isfinite(arr).all():
        raise ValueError(f"SAL values must be a non-empty finite (epochs × layers) array, got shape {arr.shape}")
    return arr


def learnable_threshold(values) -> float:
    """Learnable threshold β (SAL/UD Eq. 4) from the clean model's SALs.

    ``values``: one epoch's layer SALs (1-D) or epochs × layers (2-D array, or a list of per-epoch dicts
    layer → SAL). Per epoch, the layer SALs are split by 2-means (scikit-learn KMeans, n_init=10,
    random_state=0) and the two centres averaged; β is the mean of that over the epochs.
    """
    from sklearn.cluster import KMeans
    arr = _matrix(values)
    if arr.shape[1] < 2:
        raise ValueError(f"2-means needs at least two layer SALs per epoch, got {arr.shape[1]}")
    out = []
    for row in arr:
        if np.ptp(row) == 0:  # one distinct value: both centres coincide with it
            out.append(float(row[0]))
            continue
        km = KMeans(n_clusters=2, n_init=10, random_state=0).fit(row.reshape(-1, 1))
        out.append(float(km.cluster_centers_.mean()))
    return float(np.mean(out))


def learnable_counts(values, beta: float, sizes: dict | None = None) -> np.ndarray:
    """λ(SAL(θ, ε, t), β) of Eq. 5 for each epoch: the number of layers whose SAL exceeds ``beta``.

    With ``sizes`` (layer → number of weights; ``values`` then as per-epoch dicts) each learnable layer counts
    its number of scalar weights instead (a variant; the paper counts layers).
    """
    if isinstance(beta, bool) or not (isinstance(beta, (int, float, np.floating)) and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number, got {beta!r}")
    if sizes is None:
        return (_matrix(values) > beta).sum(axis=1).astype(float)
    if isinstance(values, dict):
        values = [values]
    if not (isinstance(values, (list, tuple)) and values and all(isinstance(v, dict) for v in values)):
        raise ValueError("with sizes, values must be per-epoch dicts layer → SAL")
    return np.array([sum(sizes[k] for k, s in v.items() if s > beta) for v in values], dtype=float)


def learnable_parameters(values, beta: float, sizes: dict | None = None) -> float:
    """#LP: the mean over the measured epochs of :func:`learnable_counts` (unit: layers, or weights with sizes)."""
    return float(learnable_counts(values, beta, sizes).mean())


def unlearnable_distance(lp_poisoned: float, lp_clean: float) -> float:
    """UD (SAL/UD Eq. 5): #LP of the poisoned model over #LP of the clean model (same architecture, same β)."""
    for name, v in (("lp_poisoned", lp_poisoned), ("lp_clean", lp_clean)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if lp_clean == 0:
        raise ValueError("lp_clean is 0: the clean model has no learnable layer above β, so UD is undefined")
    return float(lp_poisoned) / float(lp_clean)


# ---------------------------------------------------------------- the stored run and the tables


def sal_epochs(p) -> list[int]:
    """The epochs SAL is measured after: every ``p.sal_every``-th and the last (Eq. 4-5 average over these)."""
    if p.sal_every < 1 or p.victim_epochs < 1:
        raise ValueError(f"sal_every and victim_epochs must be >= 1, got {p.sal_every} and {p.victim_epochs}")
    return sorted({p.victim_epochs} | set(range(p.sal_every, p.victim_epochs + 1, p.sal_every)))


def sal_history(record: dict) -> list[dict]:
    """The record's per-epoch SAL dicts (layer → SAL), in epoch order."""
    return [e["sal"] for e in record["history"] if "sal" in e]


@dataclass(frozen=True)
class SALSpec(Spec):
    """A SAL run (kind ``"sal"``, :func:`sal_run`): its victim's spec (the same poison, purifier and recipe),
    the ``samples`` SAL is measured on and the ``epochs`` it is measured after, with ``steps`` ascent steps.
    A value like every other spec: what :func:`sal_spec` builds from a profile."""

    victim: VictimSpec
    samples: int
    epochs: tuple
    steps: int
    kind: ClassVar[str] = "sal"

    @property
    def method(self) -> str:
        return self.victim.method

    def config(self) -> dict:
        return {"victim": self.victim.config(), "samples": self.samples, "epochs": list(self.epochs),
                "steps": self.steps, "eps": EPS, "lr": LR, "batch_size": None, "subset_seed": 2, "augment": False,
                "bn": "eval"}

    def compute(self, ctx, store, progress, device) -> dict:
        return compute_sal(self, ctx, store, progress, device)

    def dependencies(self) -> list:
        return self.victim.dependencies()

    def describe(self) -> str:
        d = self.victim.defense
        return f"SAL {self.victim.model} on {self.method}" + ("" if d is None else f" + {d[0]}")


def sal_spec(p, method: str, seed: int = 0, arch: str | None = None, defense=None) -> SALSpec:
    """The :class:`SALSpec` of :func:`sal_run`'s arguments (validated)."""
    from . import experiments as ex
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    ex.check_method(method)
    victim = ex.victim_spec(p, method, seed, arch, defense=defense)  # refuses an unknown architecture or defense
    return SALSpec(victim, p.sal_samples, tuple(sal_epochs(p)), p.sal_steps)


def sal_run(p, method: str, seed: int = 0, store=None, progress: bool = True, arch: str | None = None,
            defense=None) -> dict:
    """Record (kind ``"sal"``) of a victim trained on ``method``'s poisoned training set with per-layer SAL.

    The victim (``arch`` or ``p.model``, width ``p.width``, the profile's victim recipe, ``seed``) is trained as
    :func:`miue.experiments.victim` does; after the epochs of :func:`sal_epochs` the SAL of every layer is
    measured on a fixed stratified subset of ``p.sal_samples`` of the (poisoned) training images, without
    augmentation. With ``defense`` (a name or ``{"name": ..., **settings}``, as for a victim) the victim trains
    under it and SAL is measured on the training images it sees (purified, for a data-side defense; SAL/UD
    Table 2). Resumable: training state and the SAL measured so far are checkpointed after every epoch.
    """
    from . import experiments as ex
    return ex.run(sal_spec(p, method, seed, arch, defense), store, progress, device=p.device)


def compute_sal(spec: SALSpec, ctx, store, progress: bool, device) -> dict:
    """The computation of a :class:`SALSpec`: its victim trained with SAL measured after ``spec.epochs``."""
    from . import experiments as ex
    from .data import stratified_subset
    from .models import create_model
    from .train import Recipe, evaluate, fit
    victim, method, seed = spec.victim, spec.method, spec.victim.seed
    cfg = spec.config()
    train, test = ex.spec_splits(victim)
    if victim.poison is not None:
        pois = ex.load_poison(victim.poison, store, progress, str(device))
        train = train.with_images(pois.apply(train.images))
    train, hook = ex.defended(victim, train, store, progress, device)
    probe = stratified_subset(train, cfg["samples"], seed=cfg["subset_seed"])
    curve = stratified_subset(test, ex.CURVE_TEST_SIZE, seed=1)
    c, h, _ = train.shape
    torch.manual_seed(seed)
    model = create_model(victim.model, train.num_classes, c, h, victim.width)
    sizes = {n: m.weight.numel() for n, m in model.named_modules() if n in sal_layers(model)}
    epochs = set(cfg["epochs"])

    def on_epoch(epoch, net):
        if epoch not in epochs:
            return {}
        t0 = time.perf_counter()
        res = model_sal(net, probe.images, probe.labels, eps=cfg["eps"], steps=cfg["steps"], lr=cfg["lr"],
                        device=device, batch_size=cfg["batch_size"], progress=progress, details=True)
        return {"sal": {k: r["sal"] for k, r in res.items()},
                "sal_ascent": {k: r["ascent"] for k, r in res.items()},
                "sal_descent": {k: r["descent"] for k, r in res.items()},
                "sal_loss": next(iter(res.values()))["loss"], "sal_seconds": time.perf_counter() - t0}

    history = fit(model, train, Recipe(**cfg["victim"]["recipe"]), test=curve, seed=seed, device=device,
                  progress=progress, checkpoint=ctx.checkpoint(), desc=f"SAL {cfg['victim']['model']} {method} s{seed}",
                  on_epoch=on_epoch, hook=hook)
    test_loss, test_acc = evaluate(model, test, device)
    train_loss, train_acc = evaluate(model, train, device)
    ctx.checkpoint().remove()
    sal_seconds = sum(e.get("sal_seconds", 0.0) for e in history)
    return {"metrics": {"test_acc": test_acc, "test_loss": test_loss, "train_acc": train_acc,
                        "train_loss": train_loss, "n_train": len(train), "n_test": len(test),
                        "n_sal": len(probe), "layers": list(sizes), "layer_params": sizes,
                        "sal_seconds": sal_seconds,
                        "train_seconds": sum(e["seconds"] for e in history) - sal_seconds},
            "history": history}


def ud_table(records: dict, clean: dict, reference_lp: float | None = None):
    """The paper's Table 1/3 columns for ``records`` (method → sal record) against the ``clean`` sal record.

    β (Eq. 4) comes from the clean record's SAL across its measured epochs; #LP is the mean number of layers
    above β per measured epoch; UD (Eq. 5) divides by the clean #LP of the same architecture. ``reference_lp``
    (e.g. the ResNet-18 clean #LP) adds ``ud_reference`` = #LP / reference_lp: the convention the paper's
    Table 3 used, inconsistently, for its TAP and OPS columns. Also given: the same count in weights
    (``lp_weights``, ``ud_weights``: learnable layers weighted by their number of weights). Returns a DataFrame
    indexed by method, with the clean model as row ``"clean"``.
    """
    import pandas as pd
    for name, rec in [("clean", clean), *records.items()]:
        if not isinstance(rec, dict) or rec.get("kind") != "sal" or not sal_history(rec):
            raise ValueError(f"record {name!r} is not a sal record with SAL history (from sal_run)")
    if any(r["config"]["victim"]["model"] != clean["config"]["victim"]["model"] for r in records.values()):
        raise ValueError("UD compares models of one architecture: every record must have the clean record's model")
    beta = learnable_threshold(sal_history(clean))
    sizes = clean["metrics"]["layer_params"]
    lp_c = learnable_parameters(sal_history(clean), beta)
    lw_c = learnable_parameters(sal_history(clean), beta, sizes)
    rows = []
    for m, rec in {"clean": clean, **{k: v for k, v in records.items() if v is not clean}}.items():
        hist = sal_history(rec)
        lp, lw = learnable_parameters(hist, beta), learnable_parameters(hist, beta, sizes)
        row = {"method": m, "model": rec["config"]["victim"]["model"], "test_acc": 100 * rec["metrics"]["test_acc"],
               "beta": beta, "lp": lp, "ud": unlearnable_distance(lp, lp_c) if lp_c > 0 else float("nan"),
               "lp_weights": lw, "ud_weights": lw / lw_c if lw_c > 0 else float("nan"),
               "layers": len(hist[0]), "epochs": len(hist), "mean_sal": float(_matrix(hist).mean())}
        if reference_lp is not None:
            row["ud_reference"] = lp / reference_lp if reference_lp > 0 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def ud_defense_table(defended: dict, undefended: dict, clean: dict):
    """SAL/UD Table 2: UD of victims trained under defenses, against the undefended clean model.

    ``defended`` maps (method, defense name) → sal record of a victim trained under that defense;
    ``undefended`` maps method → sal record without a defense (Table 1's runs); ``clean`` is the undefended clean
    record. As in the paper (its Table 2 divides every #LP by Table 1's vanilla 3.32), β (Eq. 4) and the #LP
    that UD (Eq. 5) divides by both come from ``clean``, so a defended clean victim can have UD above 1.
    ``ud_delta`` is the change from the method's undefended UD (the paper's red and blue ± values). Returns a
    DataFrame with one row per (method, defense), in the order given.
    """
    import pandas as pd
    if not defended:
        raise ValueError("defended is empty: pass (method, defense) → sal record of victims trained under defenses")
    keys = {f"{m}\x1f{d}": rec for (m, d), rec in defended.items()}
    keys.update({f"{m}\x1f": rec for m, rec in undefended.items()})
    tab = ud_table(keys, clean)
    rows = []
    for m, d in defended:
        row, base = tab.loc[f"{m}\x1f{d}"], f"{m}\x1f" if m != "clean" else "clean"
        before = tab.loc[base, "ud"] if base in tab.index else float("nan")
        rows.append({"method": m, "defense": d, "test_acc": row["test_acc"], "lp": row["lp"], "ud": row["ud"],
                     "ud_delta": row["ud"] - before, "ud_weights": row["ud_weights"], "beta": row["beta"]})
    return pd.DataFrame(rows)
