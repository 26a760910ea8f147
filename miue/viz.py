"""One figure style for the book, image grids (Fig. 4), learning curves (Fig. 6), tables next to the paper's."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from .methods import LABELS, color, label  # noqa: F401  (one label and one colour per method, book-wide)


def set_style() -> None:
    """The book's one style: seaborn whitegrid, colour-blind palette, compact fonts."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "figure.autolayout": True,
                         "axes.titleweight": "bold"})
    try:  # inline figures without matplotlib's version stamp: the same PNG bytes across releases
        from IPython import get_ipython
        from matplotlib_inline.config import InlineBackend
        ip = get_ipython()
        if ip is not None:
            cfg = InlineBackend.instance(parent=ip)
            cfg.print_figure_kwargs = {**cfg.print_figure_kwargs, "metadata": {"Software": None}}
    except ImportError:
        pass


def palette(methods) -> dict:
    """label → the method's own colour (the same in every chapter)."""
    return {label(m): color(m) for m in methods}


def image_grid(rows: dict[str, torch.Tensor], titles: list[str] | None = None, noise_scale: float = 1.0):
    """A grid of images: one row per entry of ``rows`` (uint8 N×C×H×W, or float noise in [−ε, ε])."""
    names = list(rows)
    n = rows[names[0]].shape[0]
    fig, axes = plt.subplots(len(names), n, figsize=(1.4 * n, 1.5 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        imgs = rows[name]
        for c in range(n):
            img = imgs[c].float()
            if imgs.dtype == torch.uint8:
                img = img / 255
            else:  # noise: map [−s, s] to [0, 1]
                img = (img / (2 * noise_scale) + 0.5).clamp(0, 1)
            ax = axes[r][c]
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(img.permute(1, 2, 0))
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
            if r == 0 and titles:
                ax.set_title(titles[c], fontsize=8)
    return fig


def learning_curves(histories: dict[str, list[list[dict]]], keys=("train_acc", "test_acc")):
    """Accuracy per epoch for each method, as in the paper's Figure 6: training accuracy (on the augmented
    poisoned batches) as solid lines with filled markers, clean test accuracy as dashed lines with hollow
    markers, one colour per method; the line is the mean over seeds and the band spans them.
    ``histories``: method → list over seeds of per-epoch history entries."""
    import numpy as np
    fig, ax = plt.subplots(figsize=(6.6, 3.9))
    styles = {"train_acc": dict(ls="-", marker="o", mfc=None), "test_acc": dict(ls="--", marker="o", mfc="white")}
    for m, hs in histories.items():
        for key in keys:
            runs = [[100 * e[key] for e in h if key in e] for h in hs]
            runs = [r for r in runs if r]
            if not runs:
                continue
            n = min(map(len, runs))
            arr = np.array([r[:n] for r in runs])
            x = np.arange(1, n + 1)
            st = styles.get(key, dict(ls=":", marker=".", mfc=None))
            ax.plot(x, arr.mean(0), color=color(m), ls=st["ls"], marker=st["marker"], markersize=3.5,
                    markerfacecolor=st["mfc"] or color(m), markeredgecolor=color(m), lw=1.4)
            if len(arr) > 1:
                ax.fill_between(x, arr.min(0), arr.max(0), color=color(m), alpha=0.12, lw=0)
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=color(m), lw=2, label=label(m)) for m in histories]
    handles += [Line2D([], [], color="0.3", ls="-", marker="o", markersize=4, label="training (poisoned)"),
                Line2D([], [], color="0.3", ls="--", marker="o", markersize=4, markerfacecolor="white",
                       label="test (clean)")]
    ax.legend(handles=handles, fontsize=8, ncol=2, loc="lower right")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    return fig
