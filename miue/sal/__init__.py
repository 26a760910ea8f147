"""Sharpness-aware learnability (SAL) and the unlearnable distance (UD) of "How Far Are We from True
Unlearnability?" (SAL/UD paper, Sec. 3.3-4, Eq. 3-5, Algorithm 1).

* SAL (Eq. 3) of one Conv2d/Linear layer l of a network θ, all other layers frozen:
  ``SAL(θ_l, ε, t) = max_{‖v‖₂ ≤ ε‖θ_l‖₂} |L(θ_l + v) − L(θ_l)|`` on the training data. The maximum is
  searched as in the paper's protocol: ``steps`` SGD passes (lr 0.1) over the data, once ascending and once
  descending the loss, each pass followed by a projection onto the relative L2 ball; SAL is the larger
  |Δloss| reached by any iterate of either direction (so SAL ≥ 0). Only the layer's weight is perturbed.
* Learnable threshold β (Eq. 4): per measured epoch, 2-means of the clean model's layer SALs; β is the mean
  of the two centres, averaged over the epochs.
* #LP and UD (Eq. 5): λ(t) is the number of layers whose SAL exceeds β at epoch t; #LP is its mean over the
  measured epochs ("average number of learnable parameters", where a "parameter" is a layer's weight tensor
  θ_l, as in Eq. 3); UD = #LP(poisoned) / #LP(clean).

:func:`sal_run` trains a victim and measures the SAL of every layer every ``p.sal_every`` epochs, as a stored
run (kind ``"sal"``); :func:`ud_table` turns such records into the paper's Table 1/3 columns.

Speed (the results are those of plain full forward/backward passes, up to float rounding; a test checks it):
a layer's SAL needs about 2·``steps`` forward/backward passes in which only that layer's weight changes. The
network is traced once with ``torch.fx``; for each layer, the part of the graph that does not depend on it is
computed once (no grad) and cached, and each pass re-runs only the dependent suffix. Every other conv is
folded with its eval-mode BatchNorm. The gradient at the unperturbed point is shared by both directions; with
full-batch passes (the default) each iterate's loss comes out of the next pass's forward; and the descent is
skipped when the ascent already exceeds the unperturbed loss (cross-entropy ≥ 0 bounds the descent by it).
Untraceable models fall back to full eager passes.

Modules: :mod:`~miue.sal.layers` (the Conv2d/Linear layers; the ``torch.fx`` split into cached prefix and re-run
suffix, BN folding), :mod:`~miue.sal.measure` (SAL of a layer and of a model, Eq. 3), :mod:`~miue.sal.distance`
(β, #LP and UD, Eq. 4-5), :mod:`~miue.sal.run` (:class:`SALSpec` and the stored run), :mod:`~miue.sal.tables`
(the paper's UD tables).
"""

from .distance import learnable_counts, learnable_parameters, learnable_threshold, unlearnable_distance
from .layers import CACHE_BYTES, sal_layers
from .measure import CHUNK, EPS, LR, STEPS, layer_sal, model_sal
from .run import SALSpec, compute_sal, sal_epochs, sal_history, sal_run, sal_spec
from .tables import ud_defense_table, ud_table

__all__ = ["learnable_counts", "learnable_parameters", "learnable_threshold", "unlearnable_distance", "CACHE_BYTES",
           "sal_layers", "CHUNK", "EPS", "LR", "STEPS", "layer_sal", "model_sal", "SALSpec", "compute_sal",
           "sal_epochs", "sal_history", "sal_run", "sal_spec", "ud_defense_table", "ud_table"]
