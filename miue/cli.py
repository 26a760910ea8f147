"""``miue``: the command line. ``miue protect IN_DIR OUT_DIR`` protects a folder of images and ``miue verify
OUT_DIR`` checks it; ``miue grid CHAPTER --profile P`` computes a chapter's missing runs (``--dry-run`` lists
them, ``--cluster local|slurm`` sends them to submitit); ``miue audit`` re-runs recorded runs from scratch.

Each subcommand is the module's own ``main`` (``python -m miue.grid``, ``python -m miue.audit``)."""

from __future__ import annotations

import sys

COMMANDS = {
    "protect": ("miue.protect.cli:protect_main", "protect a folder of images with unlearnable perturbations"),
    "verify": ("miue.protect.cli:verify_main", "check a protected folder: protected vs control victim accuracy"),
    "grid": ("miue.grid", "run (or list, --dry-run) every missing run of a chapter or study"),
    "audit": ("miue.audit", "re-run one victim and one poison from scratch at several thread counts; record the drift"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: miue COMMAND [options]\n\ncommands:")
        for name, (_, what) in COMMANDS.items():
            print(f"  {name:<10}{what}")
        print("\n'miue COMMAND --help' describes a command's options.")
        return 0
    if argv[0] not in COMMANDS:
        print(f"miue: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    import importlib
    target = COMMANDS[argv[0]][0]
    module_name, _, func = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), func or "main")(argv[1:]) or 0
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's convention for SIGINT (128 + 2)
        print(f"\nmiue {argv[0]}: interrupted; run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
