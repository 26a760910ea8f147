"""What the default settings cost: two owner folders (a dozen photographs, 1,000 CIFAR-10 ones) protected
and verified at the command's defaults, and the book's table of their times and verdicts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..runs import RunStore
from .examples import demo_configs, recorded_job, sample_photos
from .images import scan
from .reference import auto_reference_size
from .verdicts import accuracy_text, gap_text, record_verdict, verdict_line


COST_JOBS = {  # name → (what, images at the cpu profile, at smoke)
    "dozen": ("12 photographs (4 crops of each of 3 photographs shipped with scikit-image, 3 classes)", 12, 12),
    "cifar-1000": ("1,000 photographs (CIFAR-10 (JPEG q75 copy) test images, 100 a class, 10 classes)", 1000, 100),
}


def owner_folder(job: str, dest: str | Path, n: int) -> Path:
    """A data owner's folder for :data:`COST_JOBS` ``job``: the dozen photographs, or ``n`` test images of the
    CIFAR-10 JPEG copy (``n / 10`` a class, the first by file name), copied as the JPEG files they are."""
    import shutil

    from ..data import CIFAR10_CLASSES, find_cifar10_jpeg
    dest = Path(dest)
    if job == "dozen":
        return sample_photos(dest, crops=n // 3, photos=("astronaut", "chelsea", "coffee"))
    if job != "cifar-1000":
        raise ValueError(f"unknown job {job!r}; choose one of {', '.join(COST_JOBS)}")
    folder, _ = find_cifar10_jpeg()  # the layout checked; says where to get the copy when it is missing
    for c in CIFAR10_CLASSES:
        (dest / c).mkdir(parents=True, exist_ok=True)
        for f in sorted((folder / "test" / c).iterdir())[:n // len(CIFAR10_CLASSES)]:
            shutil.copyfile(f, dest / c / f.name)
    return dest


def default_job_configs(job: str, profile_name: str, store: RunStore) -> tuple[dict, dict | None]:
    """(protect config, verify config or None) of :func:`default_job`, computing nothing."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="miue-cost-") as tmp:
        photos = owner_folder(job, Path(tmp) / "photos", COST_JOBS[job][2 if profile_name == "smoke" else 1])
        images, _ = scan(photos, 32)
        return demo_configs(images, "miue", profile_name, auto_reference_size(len(images), profile_name), 0, store)


def default_job(job: str, profile_name: str = "cpu", store: RunStore | None = None,
                progress: bool = False) -> tuple[dict, dict]:
    """(protect record, verify record) of ``job`` at the command's default settings (MI-UE, ε 8/255, the
    reference sized to the job) and ``profile_name``; read from ``store``, computed only when missing."""
    import tempfile
    store = store or RunStore()
    n = COST_JOBS[job][2 if profile_name == "smoke" else 1]
    with tempfile.TemporaryDirectory(prefix="miue-cost-") as tmp:
        work = Path(tmp)
        photos = owner_folder(job, work / "photos", n)
        ref = auto_reference_size(len(scan(photos, 32)[0]), profile_name)
        return recorded_job(photos, "miue", profile_name, ref, 0, store, work, progress)


@dataclass
class CostTable:
    table: object  # pandas DataFrame
    summary: str
    records: dict  # job → (protect record, verify record)


def cost_table(profile_name: str = "cpu", store: RunStore | None = None) -> CostTable:
    """The book's table of what :data:`COST_JOBS` cost at the default settings, from their records."""
    import pandas as pd
    records = {job: default_job(job, profile_name, store) for job in COST_JOBS}
    rows, lines = [], []
    for job, (prec, vrec) in records.items():
        v = record_verdict(vrec)
        pm, vm = prec["metrics"], vrec["metrics"]
        protect_min = prec["provenance"]["wall_time_s"] / 60
        verify_min = vrec["provenance"]["wall_time_s"] / 60
        rows.append({"folder": COST_JOBS[job][0].split(" (")[0], "images": pm["images"],
                     "classes": pm["classes"], "reference images": prec["config"]["reference"]["size"],
                     "protect (min)": round(protect_min, 1), "verify (min)": round(verify_min, 1),
                     "held-out images": vm["n_test_owner"],
                     "protected victim [95% CI]": accuracy_text(vrec, "protected"),
                     "control victim [95% CI]": accuracy_text(vrec, "control"),
                     "gap (points) [95% CI]": gap_text(vrec), "verify says": verdict_line(v)})
        lines.append(f"{COST_JOBS[job][0]}: protect took {protect_min:.1f} min and verify {verify_min:.1f} min; "
                     f"verify: {verdict_line(v)}.")
    return CostTable(pd.DataFrame(rows).set_index("folder"), "\n\n".join(lines), records)
