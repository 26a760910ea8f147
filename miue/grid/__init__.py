"""``miue grid CHAPTER --profile P [--cluster inline|local|slurm]``: compute every missing run of a chapter.

Lists the chapter's run specs (:func:`miue.chapters.chapter_specs`), skips those with records, and dispatches
the rest into the run store, in waves by dependency (poisons before the victims trained on them, victims
before the MI estimates of their features):

- ``inline``: one after another in this process, in the order the chapter lists them, each after the missing
  runs it reads (:func:`in_order`; progress bars in the terminal);
- ``local``: submitit's local executor, at most ``--jobs`` subprocesses at a time;
- ``slurm``: one Slurm job array per wave through submitit (``--jobs`` is the array's parallelism).

Every job opens the same run store, so jobs that race for one run (two grids over one store, two victims of
one missing poison) wait on its lock, and each run is computed once; an interrupted job resumes from its last
checkpoint when the grid is run again. ``--dry-run`` prints each spec with its recorded or estimated cost
(a missing run's estimate adds regenerating the recorded inputs it reads that the cache lacks: after a fresh
clone, or records made on another machine, a victim whose poison is recorded still waits for the poison).
``--within MIN`` starts a run only while its estimate still fits in the MIN minutes from the grid's start
(the rest are DEFERRED, with their dependents, for the next call): a machine lent for a fixed time ends
between runs instead of in the middle of one.

Modules: :mod:`~miue.grid.order` (which runs are missing, waves by dependency, the order listed),
:mod:`~miue.grid.jobs` (:func:`run_job`, what one job computes; :class:`Outcome`), :mod:`~miue.grid.executors`
(submitit's local and Slurm executors, GPUs per job), :mod:`~miue.grid.slurm` (waiting for a job array),
:mod:`~miue.grid.dispatcher` (:func:`dispatch`: waves, failures, the deadline), :mod:`~miue.grid.costs` (the cost
model: :func:`estimate_seconds`, :func:`regeneration_seconds`, :func:`estimate_errors`), :mod:`~miue.grid.tables`
(the Reproduce page's hours per chapter and per study, runs recorded elsewhere), :mod:`~miue.grid.cli`
(``miue grid``).
"""

from .cli import main, plain
from .costs import NEAR_RECORDS, estimate_errors, estimate_seconds, regeneration_seconds
from .dispatcher import dispatch
from .executors import CLUSTERS, job_gpus
from .jobs import Outcome, run_job
from .order import in_order, missing_specs, waves
from .tables import chapter_estimates, left_column, runs_elsewhere, study_estimates, study_hours

__all__ = ["main", "plain", "NEAR_RECORDS", "estimate_errors", "estimate_seconds", "regeneration_seconds", "dispatch",
           "CLUSTERS", "job_gpus", "Outcome", "run_job", "in_order", "missing_specs", "waves", "chapter_estimates",
           "left_column", "runs_elsewhere", "study_estimates", "study_hours"]
