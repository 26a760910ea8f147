"""Protecting a folder of one's own images: ``miue protect IN_DIR OUT_DIR`` and ``miue verify OUT_DIR``.

``protect`` reads a folder of images (any size; class sub-folders, or one folder = one class), computes an
unlearnable perturbation for each (MI-UE by default, Algorithm 1) and writes PNGs with the same relative names
and sizes, plus ``manifest.json``; ``verify`` is the owner's check that a victim trained on them learns less
than a control victim trained on the originals.

Both are runs of the run store (kinds ``protect`` and ``verify``; from the command line in a state folder
outside OUT_DIR, :func:`state_root`, so that nothing published holds the perturbation):
an interrupted generation or victim resumes from its last epoch; writing resumes file by file.

Modules, one concern each: ``images`` (reading, resizing and writing one image; scanning a folder),
``folders`` (the published OUT_DIR and the state folder outside it), ``reference`` (the classes that play
everyone else), ``protection`` (:func:`protect`), ``verification`` (:func:`verify`), ``verdicts`` (intervals,
the verdict and its words), ``cli`` (the two commands), ``examples`` (the book's end-to-end example),
``costs`` (what the default settings cost); ``errors`` (:class:`ProtectError`).
"""

from .cli import PROTECT_HELP, PROTECT_TIMES, VERIFY_HELP, protect_main, verify_main
from .costs import COST_JOBS, CostTable, cost_table, default_job, default_job_configs, owner_folder
from .errors import ProtectError
from .examples import PHOTOS, demo, demo_configs, recorded_job, sample_photos
from .folders import JOURNAL, LEGACY_STATE_DIR, MANIFEST, PART_SUFFIX, read_manifest, state_dir, state_root
from .images import (IMAGE_SUFFIXES, SourceImage, image_stats, open_image, pixels_sha256, protected_pixels, scan,
                     to_model_input)
from .protection import (DELTA_FILE, JOB_SIZED, MAX_EPSILON, SOURCE_STEPS, Protection, budget_text, job_budget,
                         parse_epsilon, protect, protect_config)
from .reference import REFERENCES, auto_reference_size, reference_set
from .verdicts import (MIN_GAP, accuracy_text, gap_interval, gap_text, record_verdict, verdict, verdict_line,
                       verdicts_text, verify_table, wilson)
from .verification import VICTIM_STEPS, verify, verify_config, victim_epochs

__all__ = [
    "COST_JOBS", "DELTA_FILE", "IMAGE_SUFFIXES", "JOB_SIZED", "JOURNAL", "LEGACY_STATE_DIR", "MANIFEST", "MAX_EPSILON",
    "MIN_GAP", "PART_SUFFIX", "PHOTOS", "PROTECT_HELP", "PROTECT_TIMES", "REFERENCES", "SOURCE_STEPS", "VERIFY_HELP",
    "VICTIM_STEPS", "CostTable", "ProtectError", "Protection", "SourceImage", "accuracy_text", "auto_reference_size",
    "budget_text", "cost_table", "default_job", "default_job_configs", "demo", "demo_configs", "gap_interval",
    "gap_text", "image_stats", "job_budget", "open_image", "owner_folder", "parse_epsilon", "pixels_sha256", "protect",
    "protect_config", "protect_main", "protected_pixels", "read_manifest", "record_verdict", "recorded_job",
    "reference_set", "sample_photos", "scan", "state_dir", "state_root", "to_model_input", "verdict", "verdict_line",
    "verdicts_text", "verify", "verify_config", "verify_main", "verify_table", "victim_epochs", "wilson",
]
