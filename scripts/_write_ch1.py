"""Writes notebooks/01_at_a_glance.ipynb from the cell texts below (kept for editing convenience)."""
import nbformat as nbf

cells = []
def md(s, tags=()): cells.append(nbf.v4.new_markdown_cell(s.strip(), metadata={"tags": list(tags)} if tags else {}))
def code(s, tags=()): cells.append(nbf.v4.new_code_cell(s.strip(), metadata={"tags": list(tags)} if tags else {}))

md(r"""
# Unlearnable examples at a glance

An *unlearnable example* (UE) is a training image with a small, bounded perturbation added
(‖δ‖∞ ≤ 8/255) so that a model trained on the whole perturbed set fails on clean
test data {cite:p}`huang2021unlearnable`. This chapter poisons a training set with four perturbations —
uniform random noise, error-minimizing noise (EM, {cite:t}`huang2021unlearnable`), adversarial poisoning
(AP, {cite:t}`fowl2021adversarial`) and MI-UE {cite:p}`miue2026` — trains victims on each, and measures
what the paper measures: the victims' clean test accuracy and the mutual information (MI) between
clean features g(X) and poisoned features g(X′) (its Table 1, Figures 4 and 6).
""")
code(r'''
profile = "cpu"  # smoke | cpu | gpu | paper
dataset = None  # None: the profile's dataset (fashion-mnist); or "cifar10", "cifar100", "digits"
methods = ["clean", "random", "em", "ap", "miue"]  # "clean" plus names from miue.attacks.ATTACKS
overrides = {}  # any Profile field, e.g. {"seeds": [0], "victim_epochs": 30, "width": 0.25}
progress = True  # text progress bars in the log
''', tags=["parameters"])
code(r'''
import time
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue
from tqdm.std import tqdm

import miue
from miue import experiments as ex, paper, viz
from miue.profiles import profile as get_profile
from miue.runs import RunStore

for _name, _value, _type in [("profile", profile, str), ("methods", methods, list), ("overrides", overrides, dict),
                             ("progress", progress, bool)]:
    if not isinstance(_value, _type):
        raise TypeError(f"parameter {_name} must be a {_type.__name__}, got {_value!r}")
if dataset is not None and not isinstance(dataset, str):
    raise TypeError(f"parameter dataset must be a string or None, got {dataset!r}")
P = get_profile(profile, dataset=dataset, **overrides)
for _m in methods:
    ex._check_method(_m)
store = RunStore()
viz.set_style()
train_ds, test_ds = ex.datasets(P)
setting = (f"{P.dataset}, {len(train_ds):,} training / {len(test_ds):,} test images, {P.model} at width "
           f"{P.width:g}, {P.victim_epochs} victim epochs, `{P.name}` profile, seeds {list(P.seeds)}")
display(Markdown(f"**Our setting:** {setting}."))
''', tags=["remove-input"])

md(r"""
## Poisons, victims and their features

Each method perturbs the same training subset. For every method and seed, a victim ResNet-18 is
trained on the published images (clipped to [0, 1] and quantized to 8 bits) with the training recipe
of the profile, and tested on clean test images. The MI is the paper's estimator (Appendix F): sliced MI
with the 100-bin histogram estimator on random unit projections, computed per class between the victim's
features of the clean and of the poisoned training images, and averaged over classes. Next to it stands
the same estimator on a *shuffled* pairing of the same features (independent by construction, true MI 0):
at a few hundred samples per class the plug-in histogram is biased far upward, and that baseline shows
by how much. Every number below is read from a run record in `data/runs/`; missing runs are computed.
""")
code(r'''
jobs = [(m, s) for m in methods for s in P.seeds]
victims, mis = {}, {}
for m, s in tqdm(jobs, desc="runs", disable=not progress):
    victims[m, s] = ex.victim(P, m, s, store, progress)
    mis[m, s] = ex.mutual_information(P, m, s, store, progress)
poisons = {m: ex.poison(P, m, store, progress)[0] for m in methods if m != ex.CLEAN}
''', tags=["hide-input", "remove-stderr"])

md(r"""
## Accuracy and MI, next to the paper's Table 1

Accuracies are mean ± standard deviation over the victim seeds; gaps are clean minus method, as printed
in the paper's Table 1 (CIFAR-10, ResNet-18, 200 epochs, one run each).
""")
code(r'''
def stat(values):
    values = np.asarray(values, dtype=float)
    return values.mean(), (values.std(ddof=1) if len(values) > 1 else float("nan"))

ref = paper.table1()
rows, summary = [], {}
for m in methods:
    acc = [100 * victims[m, s]["metrics"]["test_acc"] for s in P.seeds]
    mi = [mis[m, s]["metrics"]["mi"] for s in P.seeds]
    mi0 = [mis[m, s]["metrics"]["mi_shuffled"] for s in P.seeds]
    summary[m] = dict(acc=stat(acc), mi=stat(mi), mi_shuffled=stat(mi0))
clean_acc, clean_mi = summary["clean"]["acc"][0], summary["clean"]["mi"][0]
for m in methods:
    (a, sa), (i, si), (i0, _) = summary[m]["acc"], summary[m]["mi"], summary[m]["mi_shuffled"]
    label = paper.METHOD_LABELS.get(m, m)
    pr = ref.loc[label] if label in ref.index else None
    rows.append({
        "method": viz.LABELS.get(m, m),
        "ours: test acc (%)": f"{a:.2f} ± {sa:.2f}" if sa == sa else f"{a:.2f}",
        "ours: acc gap": "" if m == "clean" else f"{clean_acc - a:.2f}",
        "ours: MI": f"{i:.4f}",
        "ours: MI shuffled": f"{i0:.4f}",
        "ours: MI gap": "" if m == "clean" else f"{clean_mi - i:.4f}",
        "paper: test acc (%)": "" if pr is None else f"{pr['test_acc_pct']:.2f}",
        "paper: acc gap": "" if pr is None or m == "clean" else f"{pr['acc_gap_pct']:.2f}",
        "paper: MI": "" if pr is None else f"{pr['mi']:.4f}",
        "paper: MI gap": "" if pr is None or m == "clean" else f"{pr['mi_gap']:.4f}",
    })
table = pd.DataFrame(rows).set_index("method")
display(Markdown(f"**Ours:** {setting}. **Paper:** CIFAR-10, 50,000 training images, ResNet-18 at full width, "
                 "200 epochs (Table 1 of {cite}, one run per method).".replace("{cite}", "MI-UE")))
display(table)
for m in methods:
    glue(f"acc_{m}", float(summary[m]["acc"][0]), display=False)
    glue(f"mi_{m}", float(summary[m]["mi"][0]), display=False)
    glue(f"mi0_{m}", float(summary[m]["mi_shuffled"][0]), display=False)
    glue(f"gap_{m}", float(clean_acc - summary[m]["acc"][0]), display=False)
glue("n_train", float(len(train_ds)), display=False)
''', tags=["hide-input"])
md(r"""
On this profile the clean victim reaches {glue:text}`acc_clean:.1f`% and the random-noise victim
{glue:text}`acc_random:.1f`%. EM brings the victim to {glue:text}`acc_em:.1f`%, AP to
{glue:text}`acc_ap:.1f`% and MI-UE to {glue:text}`acc_miue:.1f`% (gap {glue:text}`gap_miue:.1f` points).
The clean-feature MI is {glue:text}`mi_clean:.3f` nats and MI-UE's {glue:text}`mi_miue:.3f`; the
shuffled pairing of the same features gives {glue:text}`mi0_clean:.3f` and {glue:text}`mi0_miue:.3f`:
most of the raw histogram value is estimator bias at {glue:text}`n_train:,.0f` training images, and only the
difference to the shuffled value is evidence of dependence.
""")

md("## What the poisons look like (Figure 4)")
code(r'''
shown = [m for m in methods if m != ex.CLEAN]
first = poisons[shown[0]]["samples"]
rows_img = {"clean": ex.decode(first["clean"])}
for m in shown:
    smp = poisons[m]["samples"]
    clean_img, pois_img = ex.decode(smp["clean"]), ex.decode(smp["poisoned"])
    rows_img[f"{viz.LABELS.get(m, m)} noise"] = pois_img.float() - clean_img.float()
    rows_img[f"{viz.LABELS.get(m, m)}"] = pois_img
titles = [train_ds.classes[c] for c in first["labels"]]
fig = viz.image_grid(rows_img, titles, noise_scale=8.0)
''', tags=["hide-input"])
md(r"""
Noise rows show the published change in 8-bit levels, mapped from −8…8 to black…white; the
poisoned rows are what a data owner would release. Their differences from the clean row are invisible
at this scale.
""")

md("## Learning curves (Figure 6)")
code(r'''
fig = viz.learning_curves({m: [victims[m, s]["history"] for s in P.seeds] for m in methods})
fig.axes[0].set_title(f"victims on {P.dataset}: test accuracy per epoch ({min(ex.CURVE_TEST_SIZE, len(test_ds))} test images)")
''', tags=["hide-input"])
md(r"""
Each line is the mean over seeds with the band spanning them, measured on a fixed stratified subset of
the test set after every epoch; the table above uses the full test set after the last epoch.
""")

md(r"""
## Generation budget (the structure of Table 9)

How much MI-UE generation does the effect need? MI-UE is generated again with fewer epochs (each a
complete run with its own cosine schedule) and a victim (seed 0) trained on each.
""")
code(r'''
budgets = sorted(set(P.budget_epochs) | {ex.attack_config(P, "miue")["epochs"]})
extra_runs = []
budget_rows = []
for e in tqdm(budgets, desc="budget", disable=not progress):
    v = ex.victim(P, "miue", P.seeds[0], store, progress, epochs=e)
    prec = ex.poison(P, "miue", store, progress, epochs=e)[0]
    extra_runs += [("poison", f"miue, {e} epochs", prec), ("victim", f"miue, {e} epochs, seed {P.seeds[0]}", v)]
    budget_rows.append({"MI-UE epochs": e, "test acc (%)": 100 * v["metrics"]["test_acc"],
                        "acc gap": clean_acc - 100 * v["metrics"]["test_acc"],
                        "generation (s)": prec["metrics"]["generation_seconds"]})
budget = pd.DataFrame(budget_rows)
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(5.2, 3.2))
ax.plot(budget["MI-UE epochs"], budget["test acc (%)"], marker="o", label="MI-UE victim (seed 0)")
ax.axhline(clean_acc, ls="--", color="gray", label="clean victim (mean)")
ax.set_xlabel("MI-UE generation epochs"); ax.set_ylabel("test accuracy (%)"); ax.set_ylim(0, 100); ax.legend()
display(budget.round(2).set_index("MI-UE epochs"))
''', tags=["hide-input", "remove-stderr"])
code(r'''
t9 = paper.table(9)
t9 = t9[t9["dataset"] == "CIFAR-10"].astype({"epochs": int}).set_index("epochs")["v"].sort_index(ascending=False)
for e, v in t9.items():
    glue(f"t9_{e}", float(v), display=False)
display(Markdown("**Paper, Table 9** (CIFAR-10, ResNet-18 victim, 200 epochs): MI-UE test accuracy by poisoning epochs."))
display(t9.rename("paper: test acc (%)").to_frame().rename_axis("MI-UE epochs"))
''', tags=["remove-input"])
md(r"""
On CIFAR-10 the paper's MI-UE victim stays near chance from 100 down to 20 poisoning epochs
({glue:text}`t9_100:.2f`%, {glue:text}`t9_50:.2f`%, {glue:text}`t9_20:.2f`%); at this profile's scale the
table above shows how the gap grows with the generation budget.
""")

md(r"""
## Calibration: what makes the attacks bite at this scale

The profile's attack settings were chosen by trials at the same scale: each row below is one setting,
generated once and evaluated by one victim (seed 0), next to the setting the profile uses.
""")
code(r'''
trial_rows = []
for name, spec in tqdm({**{f"profile setting: {viz.LABELS.get(m, m)}": {"method": m} for m in methods if m != ex.CLEAN},
                        **P.trials}.items(), desc="trials", disable=not progress):
    spec = dict(spec)
    method = spec.pop("method")
    v = ex.victim(P, method, P.seeds[0], store, progress, **spec)
    prec = ex.poison(P, method, store, progress, **spec)[0]
    hist = prec["history"]
    extra_runs += [("poison", name, prec), ("victim", f"{name}, seed {P.seeds[0]}", v)]
    trial_rows.append({"setting": name, "test acc (%)": round(100 * v["metrics"]["test_acc"], 2),
                       "acc gap": round(clean_acc - 100 * v["metrics"]["test_acc"], 2),
                       "victim train acc (%)": round(100 * v["metrics"]["train_acc"], 1),
                       "source acc at end (%)": round(100 * hist[-1].get("source_train_acc", hist[-1].get("train_acc", float("nan"))), 1) if hist else None,
                       "generation (s)": round(prec["metrics"]["generation_seconds"], 1)})
display(pd.DataFrame(trial_rows).set_index("setting"))
''', tags=["hide-input", "remove-stderr"])

md(r"""
## Provenance

Every run behind this page: its record's address in `data/runs/`, the device and commit it was computed
on, and its wall time.
""")
code(r'''
prov = []
def add(kind, what, rec):
    pv = rec["provenance"]
    prov.append({"run": f"{kind}/{rec['hash']}", "what": what, "device": f"{pv['device']} ({pv['device_name']})",
                 "commit": (pv["git_commit"] or "")[:10], "started": pv["started"], "wall (s)": round(pv["wall_time_s"], 1)})
for m in methods:
    if m != ex.CLEAN:
        add("poison", m, poisons[m])
    for s in P.seeds:
        add("victim", f"{m}, seed {s}", victims[m, s])
        add("mi", f"{m}, seed {s}", mis[m, s])
for kind, what, rec in extra_runs:
    add(kind, what, rec)
prov = pd.DataFrame(prov).drop_duplicates("run")
display(Markdown(f"Profile `{P.name}`; {setting}; miue {miue.__version__}. "
                 f"Total wall time of these runs: {prov['wall (s)'].sum() / 60:.1f} min."))
display(prov.set_index("run"))
''', tags=["remove-input"])

nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
nbf.write(nb, "notebooks/01_at_a_glance.ipynb")
