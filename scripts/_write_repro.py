import nbformat as nbf
cells = []
def md(s, tags=()): cells.append(nbf.v4.new_markdown_cell(s.strip(), metadata={"tags": list(tags)} if tags else {}))
def code(s, tags=()): cells.append(nbf.v4.new_code_cell(s.strip(), metadata={"tags": list(tags)} if tags else {}))
md(r"""
# Reproduce

Everything in this book is computed by the package `miue` from run records in `data/runs/`. A fresh
clone rebuilds the book from those records without recomputing; delete a record (or the whole folder)
to recompute it.

## Set up and build

```bash
git clone <this repository> miue && cd miue
make book    # venv + dependencies + offline data, executes notebooks with papermill, builds _build/html
make test    # unit tests, every notebook at the smoke profile, book build, headless-browser render check
```

`make book` executes each notebook in `notebooks/` at the `cpu` profile into `book/` and then runs
`jupyter-book build . -W -n --keep-going` (warnings are errors). Open `_build/html/index.html`.

## Profiles

A profile fixes the scale of every experiment. Any field can be overridden from a notebook parameter.
""")
code(r'''
highlight = "cpu"  # the profile the published book is executed with
''', tags=["parameters"])
code(r'''
import dataclasses
import pandas as pd
from IPython.display import display
from miue.profiles import PROFILES

rows = []
for name, p in PROFILES.items():
    d = dataclasses.asdict(p)
    rows.append({"profile": name + (" (this book)" if name == highlight else ""), "dataset": d["dataset"],
                 "train images": d["n_train"] or "all", "test images": d["n_test"] or "all",
                 "model": f"{d['model']} x{d['width']:g}", "victim epochs": d["victim_epochs"],
                 "victim lr / wd": f"{d['victim_lr']:g} / {d['victim_weight_decay']:g}", "seeds": len(d["seeds"]),
                 "attack settings": "; ".join(f"{k}: " + ", ".join(f"{a}={b:.4g}" if isinstance(b, float) else f"{a}={b}"
                                                                   for a, b in v.items())
                                              for k, v in d["attacks"].items()) or "paper defaults",
                 "MI slices / bins": f"{d['mi_slices']} / {d['mi_bins']}"})
display(pd.DataFrame(rows).set_index("profile"))
''', tags=["remove-input"])
md(r"""
`paper` uses the paper's own hyperparameters (Sec. 6.1, App. E): CIFAR-10, full-width ResNet-18, 200
victim epochs at lr 0.5, and every attack at its own paper's defaults (MI-UE: 100 epochs, batch 512,
10 PGD steps of 0.2/255, τ = 0.1, ζ = 0.1, source lr 0.5). The attack named `miue-code` holds the
settings of the authors' public code instead (source lr 0.1, ζ = 0, PGD step ramped 0.2→0.4/255,
distance term over same-class pairs divided by the feature dimension).

## Re-run one chapter

```bash
.venv/bin/papermill notebooks/01_at_a_glance.ipynb out.ipynb -p profile smoke --log-output
.venv/bin/papermill notebooks/01_at_a_glance.ipynb out.ipynb -p profile gpu -p dataset cifar10
.venv/bin/papermill notebooks/01_at_a_glance.ipynb out.ipynb -p profile cpu -y 'overrides: {seeds: [0], width: 0.25}'
```

`--log-output` streams the progress bars to the terminal. Runs that already have records are read,
not recomputed; an interrupted run resumes from its checkpoint in `data/cache/`.

## CIFAR-10, CIFAR-100 and ImageNet

On a machine with internet access, `-p dataset cifar10` (or `cifar100`) downloads the data through
torchvision into `data/`. ImageNet-subset (the first 100 classes, App. E.1) is read from the folder
named by the environment variable `MIUE_IMAGENET` (`train/<wnid>/`, `val/<wnid>/`).

## On a GPU

The `gpu` profile (`device: cuda`, full-width ResNet-18, the full training set) trains with bf16
autocast and channels_last. `python -m miue.bench --device cuda --width 1 --shape 3,32,32` measures the
throughput of victim training, of MI-UE generation and of one sliced-MI estimate.

## Recompute from scratch

```bash
rm -rf data/runs data/cache && make book
```
""")
nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/reproduce.ipynb")
