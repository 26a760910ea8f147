"""Where a job's files go: the published OUT_DIR and the state folder outside it.

OUT_DIR receives only what is meant to be published: the protected PNGs (each written whole, through a
part file) and ``manifest.json``. The resumable state (the perturbation δ, checkpoints, the run record, the
journal of written files) lives in a state folder outside OUT_DIR, keyed by the job's folders; a small note
there remembers which folder a protected folder came from (for verify).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import ProtectError


MANIFEST = "manifest.json"
LEGACY_STATE_DIR = ".miue"  # where earlier versions kept their state, inside OUT_DIR (it held δ: removed on sight)
JOURNAL = "written.jsonl"
PART_SUFFIX = ".miue-part"  # a PNG being written; removed when found after an interruption


def state_root() -> Path:
    """Where resumable state lives by default: ``$MIUE_STATE``, else ``$XDG_CACHE_HOME/miue``, else
    ``~/.cache/miue``; never inside a folder that is published."""
    if os.environ.get("MIUE_STATE"):
        return Path(os.environ["MIUE_STATE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "miue"


def _job_key(*folders: Path) -> str:
    return hashlib.sha256("\n".join(str(Path(f).resolve()) for f in folders).encode()).hexdigest()[:16]


def state_dir(command: str, *folders: Path, state: str | Path | None = None) -> Path:
    """The state folder of one job: ``state`` when given, else the state root's ``command/<job key>``,
    the key a hash of the job's folders (the same command resumes in the same place)."""
    return Path(state) if state is not None else state_root() / command / _job_key(*folders)


def _check_state(state: Path, out_dir: Path) -> None:
    a, b = state.resolve(), out_dir.resolve()
    if a == b or b in a.parents:
        raise ProtectError(f"--state {state} is inside OUT_DIR {out_dir}: the state holds the perturbation, which "
                           "undoes the protection; choose a folder outside OUT_DIR")


def _pointer(out_dir: Path) -> Path:
    """A small note, outside OUT_DIR, of which input folder a protected folder came from (for verify)."""
    return state_root() / "originals" / f"{_job_key(out_dir)}.json"


def _clean_out_dir(out_dir: Path) -> list[str]:
    """Remove what an older or interrupted run left in OUT_DIR that is not meant to be published: the old
    in-folder state (it held δ and the originals' thumbnails) and half-written PNGs. Returns what went."""
    import shutil
    gone = []
    legacy = out_dir / LEGACY_STATE_DIR
    if legacy.is_dir():
        shutil.rmtree(legacy)
        gone.append(str(legacy))
    for part in out_dir.rglob(f"*{PART_SUFFIX}"):
        part.unlink(missing_ok=True)
        gone.append(str(part))
    return gone


def _check_folders(in_dir: Path, out_dir: Path) -> None:
    a, b = in_dir.resolve(), out_dir.resolve()
    if a == b or a in b.parents:
        raise ProtectError(f"OUT_DIR {out_dir} is inside IN_DIR {in_dir}: protect never writes into the input "
                           "folder; choose an OUT_DIR outside it")
    if b in a.parents:
        raise ProtectError(f"IN_DIR {in_dir} is inside OUT_DIR {out_dir}: choose an OUT_DIR that does not hold "
                           "the input folder")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{PART_SUFFIX}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_manifest(out_dir: str | Path) -> dict:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise ProtectError(f"{out_dir} has no {MANIFEST}: run 'miue protect IN_DIR {out_dir}' first (or let an "
                           "interrupted protect finish)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        raise ProtectError(f"{path} is not valid JSON: run 'miue protect' again to rewrite it") from None
    if not isinstance(manifest, dict) or not all("sha256" in e for e in manifest.get("images") or [{}]):
        raise ProtectError(f"{path} was written by an older miue (or is not a protect manifest): run 'miue protect' "
                           "again to rewrite the folder")
    return manifest
