"""The two commands, ``miue protect`` and ``miue verify``: their options, help texts and output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .errors import ProtectError, _count
from .folders import MANIFEST
from .protection import protect
from .verdicts import MIN_GAP, verify_table
from .verification import verify


# measured on 2 CPU cores (the book's page "Protecting your own images"); tests/test_protect.py checks these
# numbers against the committed records of those runs
PROTECT_TIMES = """\
  12 photographs (3 classes, 48 to 160 pixels a side): protect 55 s, verify 19 s (3 held-out images:
    verify says it cannot tell).
  1,000 photographs (CIFAR-10 test images of the JPEG copy, 10 classes, 32x32): protect 15.9 min, verify
    4.0 min; verify: protected victim 25.6%, control 44.8% on 250 held-out images, gap 19.2 points (95%
    interval 10.9 to 27.2): protection works.
  (the runs' recorded times on an Intel Xeon, 2 cores, torch 2.14.1, seed 0; the command adds a few seconds
  to start. The book's page "Protecting your own images" shows the runs; a test checks these numbers.)"""


PROTECT_HELP = """Protect a folder of images with unlearnable perturbations.

Reads every image under IN_DIR (PNG, JPEG, and other still formats; any size; class sub-folders, or the
folder as one class) and writes a protected PNG for each under OUT_DIR with the same relative name and
size, plus OUT_DIR/manifest.json (method, settings, epsilon, source model, seed; per protected image its
class, size, SHA-256, l-inf change and PSNR). Each written image differs from its original by at most
epsilon in every pixel and channel, after resizing and 8-bit quantisation. Metadata (EXIF and the like) is
dropped, after EXIF orientation is applied.

OUT_DIR holds only what is meant to be published: the protected PNGs and the manifest, which names no
input path and holds no digest or picture of the originals. The perturbation itself (which undoes the
protection), the checkpoints and the journal live in a state folder outside OUT_DIR (--state; default
~/.cache/miue/protect/<job>, or $MIUE_STATE) and are deleted when the run finishes (--keep-state keeps
them). An interrupted run (Ctrl-C) resumes from there when the same command is run again. IN_DIR is
never written to.

With one class, a reference set (--reference) plays the other classes while the perturbation is
computed (one-class mode, the MI-UE paper's App. G.1); it is never written out. Its size follows the job:
as many reference images as yours, at least 100, at most the profile's 4,000 (--reference-size);
MI-UE's source model gets about 640 steps of batch 128 (8 to 40 epochs at the cpu profile).

How long it takes (default settings: MI-UE, cpu profile; measured on 2 CPU cores, no GPU):
TIMES
"""


VERIFY_HELP = """Check whether a protected folder is unlearnable, and say when the folder is too small to tell.

Holds out a quarter (--holdout) of each protected class as clean originals (read from --originals, the
folder protect read; remembered on this machine when protect ran here), trains one victim on the rest of
the protected images mixed with the reference set and one control victim on the same images unprotected,
and prints the held-out accuracy of the protected classes for both, each with its 95% interval. The
verdict, in one line: the protection works when the accuracy gap (control - protected) is at least
--min-gap (10 points) with 95% confidence; it does not when the gap is below that with 95% confidence;
otherwise verify says it cannot tell, and how many held-out images would decide at the same accuracies.
State (victim checkpoints) lives outside OUT_DIR and is deleted when verify finishes.
"""


def _common(ap):
    from ..profiles import PROFILES
    ap.add_argument("--profile", default="cpu", choices=list(PROFILES),
                    help="generation and training budgets: smoke (seconds, for trying the tool), cpu (default), "
                         "full, gpu, paper (the paper's budgets, for a GPU)")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--reference-size", type=int, default=None,
                    help="reference images, class-balanced (default: sized to the job, see above)")
    ap.add_argument("--state", default=None, help="the state folder (default ~/.cache/miue/<command>/<job>); "
                                                  "never inside OUT_DIR")
    ap.add_argument("--keep-state", action="store_true",
                    help="keep the state folder after success (it holds the perturbation: do not publish it)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")


def protect_main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="miue protect", description=PROTECT_HELP.replace("TIMES", PROTECT_TIMES),
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example:\n  miue protect photos/ photos-protected/ --method miue "
                                        "--epsilon 8/255\n  miue verify photos-protected/ --originals photos/")
    ap.add_argument("in_dir", metavar="IN_DIR", help="folder of images to protect (read only)")
    ap.add_argument("out_dir", metavar="OUT_DIR", help="where the protected PNGs and manifest.json go")
    from ..attacks import ATTACKS
    ap.add_argument("--method", default="miue", choices=sorted(m for m, c in ATTACKS.items() if c.norm == "linf"
                                                             and m != "random"),
                    help="the attack, an l-inf one (default miue)")
    ap.add_argument("--epsilon", default="8/255", help="l-inf budget: 8/255 (default), 4/255, 8 (levels), 0.0314; "
                                                       "above 16/255 needs --force")
    ap.add_argument("--reference", default="fashion-mnist",
                    help="the other classes while protecting: fashion-mnist (default), cifar10-jpeg (the JPEG copy "
                         "of CIFAR-10, colour), cifar10, cifar100, a folder of class sub-folders, or none (needs "
                         "two classes of your own)")
    ap.add_argument("--size", type=int, default=32, help="the source model's input side in pixels (default 32)")
    ap.add_argument("--force", action="store_true", help="allow an epsilon above 16/255")
    _common(ap)
    args = ap.parse_args(argv)
    if args.reference_size is not None and args.reference_size < 10:
        ap.error("--reference-size must be at least 10 (one image a class)")
    try:
        r = protect(args.in_dir, args.out_dir, method=args.method, epsilon=args.epsilon, profile_name=args.profile,
                    reference=args.reference, reference_size=args.reference_size, size=args.size, seed=args.seed,
                    device=args.device, force=args.force, progress=not args.quiet, state=args.state,
                    keep_state=args.keep_state)
    except ProtectError as exc:
        print(f"miue protect: {exc}", file=sys.stderr)
        return 2
    for w in r.warnings:
        print(f"miue protect: {w}", file=sys.stderr)
    s = r.manifest["summary"]
    print(f"protected {_count(s['images'], 'image', 'images')} into {r.out_dir} ({r.written} written, {r.skipped} "
          f"already there); max change {s['max_linf_levels']} levels (epsilon = {r.manifest['epsilon']}), lowest PSNR "
          f"{s['min_psnr_db']} dB; manifest: {r.out_dir / MANIFEST}"
          + (f"; state kept in {r.state} (it holds the perturbation: do not publish it)" if r.state else ""))
    return 0


def verify_main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="miue verify", description=VERIFY_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", metavar="OUT_DIR", help="a folder written by miue protect")
    ap.add_argument("--originals", default=None, help="the folder protect read (default: remembered from protect "
                                                      "on this machine)")
    ap.add_argument("--reference", default=None, help="the reference set (default: the one protect used)")
    ap.add_argument("--holdout", type=float, default=0.25, help="fraction of each class held out (default 0.25)")
    ap.add_argument("--min-gap", type=float, default=MIN_GAP,
                    help="the accuracy drop that counts as working, as a fraction (default 0.10: 10 points)")
    ap.add_argument("--json", default=None, help="also write the verify record to this file")
    _common(ap)
    args = ap.parse_args(argv)
    try:
        rec = verify(args.out_dir, reference=args.reference, originals=args.originals, profile_name=args.profile,
                     holdout=args.holdout, seed=args.seed, reference_size=args.reference_size, device=args.device,
                     progress=not args.quiet, state=args.state, keep_state=args.keep_state, min_gap=args.min_gap)
    except ProtectError as exc:
        print(f"miue verify: {exc}", file=sys.stderr)
        return 2
    print(verify_table(rec, args.min_gap))
    if args.json:
        Path(args.json).write_text(json.dumps(rec, indent=1) + "\n")
    return 0
