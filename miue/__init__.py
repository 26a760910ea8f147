"""miue: the reference companion to "Why Do Unlearnable Examples Work: A Novel Perspective of
Mutual Information" (MI-UE, ICLR 2026).

Modules, one concept each: ``data`` (datasets as uint8 tensors), ``models`` (registry, f = h∘g),
``augment`` (batched tensor augmentation), ``train`` (the training loop), ``poisons`` (per-sample δ),
``attacks`` (one class per method), ``estimators`` (MI), ``runs`` (the run store), ``profiles``,
``experiments`` (the units notebooks call), ``paper`` (reference tables), ``viz`` (figures), ``bench``.
"""

import warnings as _warnings

__version__ = "0.1.0"

# libraries the book loads (diffusers, timm's hub) import tqdm.auto, which warns "IProgress not found" inside a
# Jupyter kernel without ipywidgets; the book's own bars go to the log (miue.progress), so the warning is noise
# in every output notebook
_warnings.filterwarnings("ignore", message="IProgress not found")
