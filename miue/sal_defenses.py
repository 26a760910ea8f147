"""Compute the SAL runs of SAL/UD Table 2 (victims trained under JPEG, AT, UEraser-max, MixUp and CutOut):

    python -m miue.sal_defenses --profile cpu [--threads 1]

Each run is resumable (per epoch) and recorded in the run store like every SAL run; the grid leaves SAL runs
to their chapter, so this is their runner until the chapter "Sharpness-aware learnability" executes them.
"""

from __future__ import annotations

import argparse

import torch

from . import sal
from .chapters import SAL_DEFENSE_METHODS, SAL_DEFENSES
from .profiles import profile


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    p = profile(args.profile)
    for m in SAL_DEFENSE_METHODS:
        for name, d in SAL_DEFENSES.items():
            print(f"== SAL on {m} + {name}", flush=True)
            sal.sal_run(p, m, p.seeds[0], defense=d)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
