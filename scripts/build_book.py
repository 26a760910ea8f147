"""Execute the chapter notebooks with papermill into book/, then build the HTML with jupyter-book.

    python scripts/build_book.py                 # execute at the cpu profile, then build
    python scripts/build_book.py --no-execute    # build from the committed executed notebooks
    python scripts/build_book.py --profile smoke --out /tmp/x --no-build   # what the tests do

papermill is the only executor (the book's _config.yml turns execution off). A failing cell stops the
script with the chapter and cell named.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# chapters whose cpu records are still being computed: executed by the tests at the smoke profile (--drafts),
# moved to notebooks/ (and the toc) when their records land
DRAFTS = sorted((ROOT / "notebooks" / "drafts").glob("*.ipynb"))


def takes_profile(nb: Path) -> bool:
    """Whether the notebook's parameters cell defines ``profile``."""
    cells = nbformat.read(nb, as_version=4).cells
    return any("parameters" in c.metadata.get("tags", []) and "profile =" in c.source for c in cells)


def execute(nb: Path, out_dir: Path, profile: str, log_output: bool = True) -> Path:
    out = out_dir / nb.name
    params = {"profile": profile} if takes_profile(nb) else {}
    try:
        papermill.execute_notebook(str(nb), str(out), parameters=params, cwd=str(ROOT), log_output=log_output,
                                   progress_bar=False, execution_timeout=None, kernel_name="python3")
    except papermill.PapermillExecutionError as exc:
        sys.exit(f"chapter {nb.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
                 f"(the partly executed notebook is {out})")
    book = normalize(nbformat.read(out, as_version=4))
    for cell in book.cells:  # papermill cannot tag the injected cell; hide it as the other setup cells
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if "parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
    nbformat.write(book, out)
    return out


def normalize(nb):
    """Drop what changes from one execution to the next (timestamps, durations, paths) and the stderr
    streams (progress bars and warnings stay in papermill's log, never on the page), so that executing the
    book from the same records leaves the executed notebooks byte-identical and ``git status`` clean."""
    nb.metadata.get("language_info", {}).pop("version", None)  # the Python patch release is not the book's
    pm = nb.metadata.get("papermill", {})
    nb.metadata["papermill"] = {k: pm[k] for k in ("parameters", "default_parameters") if k in pm}
    for cell in nb.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell["id"] = "injected-parameters"  # papermill draws a random id
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    return nb


def build() -> None:
    cmd = [sys.executable, "-m", "jupyter_book", "build", str(ROOT), "-W", "-n", "--keep-going"]
    jb = Path(sys.executable).with_name("jupyter-book")
    if jb.exists():
        cmd = [str(jb), "build", str(ROOT), "-W", "-n", "--keep-going"]
    subprocess.run(cmd, cwd=ROOT, check=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "book"))
    ap.add_argument("--no-execute", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--only", nargs="*", help="notebook names to execute (default: all)")
    ap.add_argument("--drafts", action="store_true", help="also execute the draft chapters in notebooks/drafts")
    args = ap.parse_args(argv)
    if args.only:  # 'protect' or 'protect.ipynb'; an unknown name is an error, not a silent no-op
        known = {nb.name for nb in NOTEBOOKS + DRAFTS}
        args.only = [n if n.endswith(".ipynb") else f"{n}.ipynb" for n in args.only]
        unknown = [n for n in args.only if n not in known]
        if unknown:
            ap.error(f"--only: no notebook {', '.join(unknown)}; the notebooks are {', '.join(sorted(known))}")
    if not args.no_execute:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        for nb in NOTEBOOKS + (DRAFTS if args.drafts else []):
            if args.only and nb.name not in args.only:
                continue
            print(f"== executing {nb.name} at profile {args.profile}", flush=True)
            execute(nb, out_dir, args.profile)
    if not args.no_build:
        build()


if __name__ == "__main__":
    main()
