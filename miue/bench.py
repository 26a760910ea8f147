"""Speed benchmark: ``python -m miue.bench --model resnet18 --width 0.25 --shape 1,28,28 --device cpu``.

Prints images per second for victim training (forward + backward + SGD step), for MI-UE generation
(one epoch = a training pass + ``pgd_steps`` PGD passes, counted per image per epoch) and the time of one
class-conditional sliced-MI estimate. Synthetic inputs: speed does not depend on the pixels.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .attacks.miue import MIUE
from .data import Augmentation, ImageDataset
from .estimators import class_conditional_mi
from .models import create_model
from .runs import provenance
from .train import PRECISIONS, Recipe, prepare, precision, resolve_device, sgd, train_steps


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_training(model_name, width, shape, batch, device, n_batches=20, compile=False) -> float:
    c, h, _ = shape
    model = prepare(create_model(model_name, 10, c, h, width), device)
    if compile:
        model = torch.compile(model)
    n = batch * n_batches
    x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, device=device)
    y = torch.randint(0, 10, (n,), device=device)
    recipe = Recipe(epochs=1, batch_size=batch, lr=0.01)
    opt, gen = sgd(model, recipe), torch.Generator().manual_seed(0)
    train_steps(model, opt, x[:batch * 3], y[:batch * 3], torch.arange(batch * 3), recipe, Augmentation(), gen,
                device)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    train_steps(model, opt, x, y, torch.arange(n), recipe, Augmentation(), gen, device)
    _sync(device)
    return n / (time.perf_counter() - t0)


def bench_miue(model_name, width, shape, batch, device, n_images=None, pgd_steps=10) -> float:
    c, h, _ = shape
    n = n_images or batch * 4
    ds = ImageDataset("synthetic", "train", torch.randint(0, 256, (n, *shape), dtype=torch.uint8),
                      torch.arange(n) % 10, tuple(str(i) for i in range(10)))
    attack = MIUE(epochs=2, batch_size=batch, pgd_steps=pgd_steps, model=model_name, width=width)
    t0 = time.perf_counter()
    attack.generate(ds, device=device, progress=False)
    _sync(device)
    return 2 * n / (time.perf_counter() - t0)


def bench_mi(n_per_class=1000, dim=512, classes=10, slices=2000, bins=100, estimator="histogram") -> float:
    g = torch.Generator().manual_seed(0)
    fx = torch.randn(n_per_class * classes, dim, generator=g)
    fy = fx + torch.randn(fx.shape, generator=g)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    t0 = time.perf_counter()
    class_conditional_mi(fx, fy, labels, slices, bins, estimator=estimator)
    return time.perf_counter() - t0


BENCH_DIR = Path(__file__).resolve().parent.parent / "data" / "bench"


def recorded(folder: str | Path | None = None):
    """The committed bench results (``data/bench/*.json``: ``machine``, ``measured``, ``results`` = this
    module's JSON lines), one row per measurement."""
    import pandas as pd
    rows = []
    for f in sorted(Path(folder or BENCH_DIR).glob("*.json")):
        b = json.loads(f.read_text())
        for r in b["results"]:
            rows.append({"machine": b["machine"], "width": r["width"], "input": "×".join(map(str, r["shape"])),
                         "batch": r["batch"], "torch.compile": "yes" if r.get("compiled") else "no",
                         "precision": r.get("precision", "auto"),
                         "training (img/s)": r.get("train_img_per_s"),
                         "MI-UE generation (img/s)": r.get("miue_gen_img_per_s"), "torch": r["torch"],
                         "measured": b["measured"]})
    return pd.DataFrame(rows, columns=["machine", "width", "input", "batch", "torch.compile", "precision",
                                       "training (img/s)",
                                       "MI-UE generation (img/s)", "torch", "measured"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--shape", default="1,28,28", help="C,H,W of the inputs")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--miue-batch", type=int, default=512)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model for the training benchmark")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="'bf16': bf16 autocast on the CPU too (a run's precision setting)")
    ap.add_argument("--mi-estimator", default="histogram", help="1-D estimator of the sliced-MI timing")
    ap.add_argument("--mi-slices", type=int, default=2000)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: train,miue,mi")
    args = ap.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    device = resolve_device(args.device)
    skip = set(filter(None, args.skip.split(",")))
    out = {"model": args.model, "width": args.width, "shape": list(shape), "batch": args.batch,
           "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "compiled": bool(args.compile), "precision": args.precision,
           "measured": time.strftime("%Y-%m-%d", time.gmtime()),
           "git_commit": provenance(str(device))["git_commit"]}
    if device.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name()
    with precision(args.precision):
        if "train" not in skip:
            out["train_img_per_s"] = round(bench_training(args.model, args.width, shape, args.batch, device,
                                                          compile=args.compile), 1)
        if "miue" not in skip:
            out["miue_gen_img_per_s"] = round(bench_miue(args.model, args.width, shape, args.miue_batch, device), 1)
    if "mi" not in skip:
        out["sliced_mi_seconds"] = round(bench_mi(slices=args.mi_slices, estimator=args.mi_estimator), 2)
        out["sliced_mi_setting"] = (f"{args.mi_estimator}, 10 classes x 1000 points, 512-d, {args.mi_slices} slices"
                                    + (", 100 bins" if args.mi_estimator == "histogram" else ""))
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
