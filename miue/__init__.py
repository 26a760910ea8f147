"""miue: the reference companion to "Why Do Unlearnable Examples Work: A Novel Perspective of
Mutual Information" (MI-UE, ICLR 2026).

Modules, one concept each: ``data`` (datasets as uint8 tensors), ``models`` (registry, f = h∘g),
``augment`` (batched tensor augmentation), ``train`` (the training loop), ``poisons`` (per-sample δ),
``attacks`` (one class per method), ``estimators`` (MI), ``runs`` (the run store), ``profiles``,
``experiments`` (the units notebooks call), ``paper`` (reference tables), ``viz`` (figures), ``bench``.
"""

__version__ = "0.1.0"
