"""The stored SAL run (kind ``"sal"``): :class:`SALSpec`, which names its computation :func:`compute_sal`;
:func:`sal_spec` and :func:`sal_run` build and run it from a profile; :func:`sal_history` reads its record."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..specs import Spec, VictimSpec
from .layers import sal_layers
from .measure import EPS, LR, model_sal


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
    from .. import experiments as ex
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
    from .. import experiments as ex
    return ex.run(sal_spec(p, method, seed, arch, defense), store, progress, device=p.device)


def compute_sal(spec: SALSpec, ctx, store, progress: bool, device) -> dict:
    """The computation of a :class:`SALSpec`: its victim trained with SAL measured after ``spec.epochs``."""
    from .. import experiments as ex
    from ..data import stratified_subset
    from ..models import create_model
    from ..train import Recipe, evaluate, fit
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
