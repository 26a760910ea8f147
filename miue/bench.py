"""Speed benchmark: ``python -m miue.bench --model resnet18 --width 0.25 --shape 1,28,28 --device cpu``.

Prints images per second for victim training (forward + backward + SGD step), for MI-UE generation
(one epoch = a training pass + ``pgd_steps`` PGD passes, counted per image per epoch) and the time of one
class-conditional sliced-MI estimate. Synthetic inputs: speed does not depend on the pixels.

``--baseline DIR`` first runs the same measurement with the package of another checkout (a worktree of an
earlier commit: ``git worktree add ../before <commit>``) in a subprocess, then this one, and prints both and
their ratios: a before/after comparison on one machine in one sitting, with no old code path kept here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from .attacks.miue import MIUE
from .data import Augmentation, ImageDataset
from .estimators import class_conditional_mi
from .models import create_model, narrow_batchnorms
from .runs import provenance
from .train import PRECISIONS, Recipe, prepare, precision, resolve_device, sgd, train_steps


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_training(model_name, width, shape, batch, device, n_batches=20, compile=False) -> float:
    c, h, _ = shape
    model = prepare(narrow_batchnorms(create_model(model_name, 10, c, h, width)), device)  # as a victim
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
                         "MI-UE generation (img/s)": r.get("miue_gen_img_per_s"),
                         "against": (r["baseline"].get("git_commit") or "?")[:7] if "baseline" in r else None,
                         "training speed-up": r.get("ratio", {}).get("train_img_per_s"),
                         "generation speed-up": r.get("ratio", {}).get("miue_gen_img_per_s"),
                         "sliced MI (s)": (f"{r['sliced_mi_seconds']:g} ({r['sliced_mi_setting']})"
                                           if r.get("sliced_mi_seconds") else None),
                         "sliced MI speed-up": r.get("ratio", {}).get("sliced_mi_seconds"),
                         "commit": (r.get("git_commit") or b.get("git_commit") or "?")[:7], "torch": r["torch"],
                         "measured": r.get("measured", b["measured"])})
    return pd.DataFrame(rows, columns=["machine", "width", "input", "batch", "torch.compile", "precision",
                                       "training (img/s)", "MI-UE generation (img/s)", "sliced MI (s)", "against",
                                       "training speed-up", "generation speed-up", "sliced MI speed-up", "commit",
                                       "torch", "measured"])


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
    ap.add_argument("--baseline", default=None, metavar="DIR",
                    help="a checkout of an earlier commit: measure it first, in a subprocess, and print the ratios")
    ap.add_argument("--save", default=None, metavar="FILE",
                    help="append the result to a bench record (data/bench/*.json: machine, measured, results)")
    ap.add_argument("--machine", default=None, help="the machine's description in a new --save record")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    baseline = None
    if args.baseline:
        baseline = _measure_baseline(args.baseline, _without_options(argv, ("--baseline", "--save", "--machine")))
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
    if baseline is not None:
        out["baseline"] = baseline
        out["ratio"] = {k: round(_speedup(k, baseline[k], out[k]), 2) for k in RATIO_KEYS
                        if baseline.get(k) and out.get(k)}
    print(json.dumps(out, indent=1))
    if args.save:
        _save(Path(args.save), out, args.machine)
    return out


# the measurements a --baseline comparison divides (seconds: before/after; img/s: after/before, both speed-ups)
RATIO_KEYS = ("train_img_per_s", "miue_gen_img_per_s", "sliced_mi_seconds")


def _speedup(key: str, before: float, after: float) -> float:
    return before / after if key.endswith("_seconds") else after / before


def _without_options(argv: list, names: tuple) -> list:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in names:
            skip = True
        elif not any(a.startswith(n + "=") for n in names):
            out.append(a)
    return out


def _measure_baseline(folder: str, argv: list) -> dict:
    """The same bench run with the ``miue`` of another checkout (its own code, this interpreter)."""
    root = Path(folder).resolve()
    if not (root / "miue" / "bench.py").is_file():
        raise SystemExit(f"--baseline {folder}: no miue/bench.py there; make one with "
                         f"'git worktree add {folder} <commit>'")
    env = {**os.environ, "PYTHONPATH": str(root)}
    res = subprocess.run([sys.executable, "-m", "miue.bench", *argv], cwd=root, env=env, capture_output=True,
                         text=True)
    if res.returncode != 0:
        raise SystemExit(f"--baseline {folder}: the bench there failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout[res.stdout.index("{"):])


def _save(path: Path, result: dict, machine: str | None) -> None:
    record = json.loads(path.read_text()) if path.exists() else {"machine": machine or "unnamed", "results": []}
    record["measured"] = result["measured"]
    record["results"].append(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    main()
