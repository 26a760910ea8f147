"""Every notebook executes headlessly with papermill at the smoke profile, into a temporary folder and
a temporary run store, and shows its tables and figures without error."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DRAFTS = sorted((ROOT / "notebooks" / "drafts").glob("*.ipynb"))  # chapters whose cpu records are not all in yet


def test_notebook_sources_are_clean_and_parameterized():
    assert NOTEBOOKS, "no notebooks found"
    for nb_path in NOTEBOOKS + DRAFTS:
        nb = nbformat.read(nb_path, as_version=4)
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{nb_path.name} has outputs"
        assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1, nb_path.name
        if nb_path.stem[:2].isdigit():  # a chapter shows results; its code is one click away, never in the way
            shown = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and not set(c.metadata.get("tags", []))
                     & {"remove-input", "remove-cell", "hide-input", "hide-cell", "parameters"}]
            assert not shown, f"{nb_path.name}: code cells {shown} are visible in the book"


def test_links_between_pages_name_their_source_files():
    """A markdown cell's link to another page names its source (``claims.ipynb``), never the rendered
    ``claims.html``: jupyter-book resolves only the former and fails the build on the latter."""
    pages = {p.name for p in (ROOT / "book").iterdir()} | {p.name for p in NOTEBOOKS}
    for nb_path in NOTEBOOKS + DRAFTS:
        for cell in nbformat.read(nb_path, as_version=4).cells:
            if cell.cell_type != "markdown":
                continue
            for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", cell.source):
                assert not target.endswith(".html"), f"{nb_path.name}: link to {target}; name the .ipynb or .md"
                if target.endswith((".ipynb", ".md")):
                    assert Path(target).name in pages, f"{nb_path.name}: link to {target}, which is no page"


@pytest.fixture(scope="session")
def book_store(tmp_path_factory):
    """One temporary run store for the whole book, as when it is built: later chapters reuse earlier runs."""
    return tmp_path_factory.mktemp("book")


@pytest.mark.notebook
@pytest.mark.parametrize("nb_path", NOTEBOOKS + DRAFTS, ids=lambda p: p.stem)
def test_notebook_runs_at_smoke_profile(nb_path, book_store, monkeypatch):
    tmp_path = book_store
    monkeypatch.setenv("MIUE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MIUE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / nb_path.name
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_book.py"), "--profile", "smoke", "--out",
                    str(tmp_path), "--no-build", "--drafts", "--only", nb_path.name], check=True, cwd=ROOT)
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = json.dumps(outputs)
    assert "<table" in html
    if nb_path.stem == "01_at_a_glance":
        assert html.count("image/png") >= 2  # Figure 4, Figure 6 (the budget figure is chapter 13's Table 9)
        assert (tmp_path / "runs" / "victim").is_dir() and (tmp_path / "runs" / "mi").is_dir()
    if nb_path.stem == "03_effective_ues_reduce_mi":
        assert html.count("image/png") >= 2  # Figure 1, Figure 3
        assert (tmp_path / "runs" / "covariance").is_dir() and (tmp_path / "runs" / "separability").is_dir()
    if nb_path.stem == "02_measuring_mutual_information":
        assert html.count("image/png") >= 2 and (tmp_path / "runs" / "validation").is_dir()
    if nb_path.stem == "05_sharpness_aware_learnability":
        assert html.count("image/png") >= 2 and (tmp_path / "runs" / "sal").is_dir()
        assert "3 of 3 cells recorded" in html  # SAL/UD Table 2 at smoke: clean, EM and AP under JPEG


@pytest.mark.notebook
def test_wrong_parameter_type_gives_one_clear_message(tmp_path):
    import papermill
    with pytest.raises(papermill.PapermillExecutionError, match="parameter profile must be a str"):
        papermill.execute_notebook(str(ROOT / "notebooks" / "01_at_a_glance.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"profile": 3}, cwd=str(ROOT), progress_bar=False,
                                   kernel_name="python3")


@pytest.mark.notebook
def test_the_book_builds_from_the_committed_records_computing_nothing(tmp_path):
    """A fresh clone: records committed, cache empty, every run-store computation forbidden. Every chapter
    executes at the cpu profile, the committed records are untouched, and the executed notebooks equal the
    committed ones in book/ (so `make book` leaves `git status` clean)."""
    import filecmp
    import os
    import shutil
    runs = tmp_path / "runs"
    shutil.copytree(ROOT / "data" / "runs", runs)
    env = {**os.environ, "MIUE_NO_COMPUTE": "1", "MIUE_RUNS": str(runs), "MIUE_CACHE": str(tmp_path / "cache")}
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_book.py"), "--profile", "cpu", "--out",
                    str(tmp_path / "book"), "--no-build"], check=True, cwd=ROOT, env=env)
    cmp = filecmp.dircmp(ROOT / "data" / "runs", runs)
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    assert not list((tmp_path / "cache").glob("*/*/*.safetensors"))  # nothing generated, nothing trained
    for nb_path in NOTEBOOKS:
        built = (tmp_path / "book" / nb_path.name).read_text()
        committed = (ROOT / "book" / nb_path.name).read_text()
        assert built == committed, f"book/{nb_path.name} differs from a fresh build: re-run `make book`"


@pytest.mark.notebook
@pytest.mark.parametrize("parameters, message", [
    ({"seeds": "notalist"}, "has no parameter\\(s\\) seeds"),
    ({"methods": "em"}, "parameter methods must be a list"),
    ({"overrides": {"victim_epochs": 0}}, "victim_epochs' = 0 is not allowed"),
])
def test_a_chapter_refuses_what_it_does_not_declare(tmp_path, parameters, message):
    import papermill
    with pytest.raises(papermill.PapermillExecutionError, match=message):
        papermill.execute_notebook(str(ROOT / "notebooks" / "01_at_a_glance.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"profile": "smoke", **parameters}, cwd=str(ROOT), progress_bar=False,
                                   kernel_name="python3")


@pytest.mark.notebook
def test_a_chapter_runs_at_smoke_on_the_cifar10_jpeg_copy(tmp_path, monkeypatch):
    """The CIFAR issue: one chapter executes on the JPEG copy of CIFAR-10 (in ``../shared`` on every machine of
    this project, CI's included) and names the data as the copy."""
    from miue.data import DatasetNotFoundError, find_cifar10_jpeg
    try:
        find_cifar10_jpeg()
    except DatasetNotFoundError as exc:
        if os.environ.get("CI") or os.environ.get("MIUE_REQUIRE_SLURM"):  # CI has ../shared: never skip there
            raise
        pytest.skip(str(exc))
    import papermill
    monkeypatch.setenv("MIUE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MIUE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "01_at_a_glance.ipynb"), str(out),
                               parameters={"profile": "smoke", "dataset": "cifar10-jpeg", "progress": False,
                                           "methods": ["clean", "random", "miue"],
                                           "overrides": {"n_train": 500, "n_test": 500}},
                               cwd=str(ROOT), progress_bar=False, kernel_name="python3")
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = json.dumps(outputs)
    assert "<table" in html and html.count("image/png") >= 2
    assert "CIFAR-10 (JPEG q75 copy)" in html
    victims = [json.loads(f.read_text()) for f in (tmp_path / "runs" / "victim").glob("*.json")]
    assert victims and all(v["config"]["dataset"] == "cifar10-jpeg" for v in victims)
    assert all("cifar10-jpeg" in v["provenance"]["datasets"] for v in victims)


def _sentences(nb):
    """Every sentence a reader sees: the markdown cells and the code cells' text outputs."""
    import re
    for c in nb.cells:
        texts = [c.source] if c.cell_type == "markdown" else []
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            texts += [o.get("data", {}).get(k, "") for k in ("text/markdown", "text/html", "text/plain")]
            texts += [o.get("text", "")] if o.get("output_type") == "stream" and o.get("name") == "stdout" else []
        for t in texts:
            yield from (x.strip() for x in re.split(r"(?<=[.!?])\s+|\n", t) if x.strip())


@pytest.mark.notebook
def test_chapters_run_elsewhere_name_only_the_dataset_seed_and_profile_they_ran(tmp_path, monkeypatch):
    """Words follow the numbers: two chapters executed at smoke on the 8x8 digits with seed 7 must not name
    the published run's dataset, its seeds or another profile in any sentence."""
    import re
    import papermill
    monkeypatch.setenv("MIUE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MIUE_CACHE", str(tmp_path / "cache"))
    common = {"profile": "smoke", "progress": False, "methods": ["clean", "random", "em", "miue", "rem", "ar"],
              "overrides": {"seeds": [7]}}
    runs = {"01_at_a_glance": {**common, "dataset": "digits", "methods": ["clean", "random", "em", "miue"]},
            "09_how_strong": {**common, "datasets": ["digits"], "recorded": {}}}
    wrong = [r"Fashion-MNIST", r"fashion-mnist", r"garment", r"\bseeds? (?!7\b)\d+\b",
             r"\b(cpu|gpu|full|cifar) profile\b", r"`(cpu|gpu|full|cifar)`"]
    found = []
    for name, params in runs.items():
        out = tmp_path / f"{name}.ipynb"
        papermill.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                                   cwd=str(ROOT), progress_bar=False, kernel_name="python3")
        nb = nbformat.read(out, as_version=4)
        found += [f"{name}: {s[:160]}" for s in _sentences(nb) if any(re.search(w, s) for w in wrong)]
        assert "8×8 digits" in json.dumps([c.get("outputs", []) for c in nb.cells], ensure_ascii=False)  # it names what it ran
    assert not found, "sentences that name another dataset, seed or profile:\n" + "\n".join(found)


@pytest.mark.notebook
def test_progress_bars_go_to_the_log_and_never_into_a_notebook(tmp_path):
    """A bar inside a papermill kernel is written to the kernel process's stderr (papermill's log), not into
    the output notebook; outside a kernel it is tqdm's text bar on stderr."""
    import papermill
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from miue.progress import tqdm\n"
                                          "import tqdm.auto as _auto  # what diffusers imports: warns IProgress in a kernel\n"
                                          "for _ in tqdm(range(3), desc='bar-in-log', mininterval=0):\n"
                                          "    pass\nprint('visible')")]
    nbformat.write(nb, tmp_path / "in.ipynb")
    papermill.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), cwd=str(ROOT),
                               progress_bar=False, kernel_name="python3")
    outputs = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs
    text = json.dumps(outputs)
    assert "visible" in text and "bar-in-log" not in text and "%|" not in text
    assert "IProgress" not in text  # no ipywidgets warning either


def test_progress_bars_outside_a_kernel_are_text_on_stderr(capsys):
    from miue.progress import tqdm
    for _ in tqdm(range(3), desc="plain-bar", mininterval=0):
        pass
    assert "plain-bar" in capsys.readouterr().err
