"""One label and one colour per method, carried by the method itself, for every table and figure of the book.

``label("miue") == "MI-UE"``; ``color("miue")`` is the same hex colour in every chapter. Attacks and
defenses declare their ``label`` on their class; colours come from :data:`COLORS` (the colour-blind palette,
fixed per name, so a method keeps its colour whatever else a figure shows).
"""

from __future__ import annotations

CLEAN = "clean"

# colour-blind safe (seaborn "colorblind" and its darker companions), fixed per method
COLORS = {
    "clean": "#000000", "random": "#949494", "em": "#0173b2", "ap": "#de8f05", "miue": "#d55e00",
    "miue-code": "#cc78bc", "rem": "#029e73", "sem": "#ca9161", "ntga": "#fbafe4", "ar": "#56b4e9",
    "gue": "#ece133", "tue": "#8c564b", "entf": "#17becf", "ops": "#7f7f7f", "lsp": "#bcbd22", "dc": "#9467bd",
    # defenses
    "none": "#000000", "jpeg": "#0173b2", "grayscale": "#949494", "mixup": "#029e73", "cutout": "#de8f05",
    "cutmix": "#cc78bc", "at": "#d55e00", "ueraser": "#56b4e9", "op": "#ca9161", "d-vae": "#8c564b",
    "ava": "#17becf", "le": "#9467bd",
}
_FALLBACK = ["#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]


def _registries():
    from .attacks import ATTACKS
    from .defenses import DEFENSES
    return ATTACKS, DEFENSES


def label(name: str) -> str:
    """The method's label as the book prints it ('clean' → 'Clean', 'miue' → 'MI-UE', 'jpeg' → 'JPEG')."""
    if name == CLEAN:
        return "Clean"
    if name is None or name == "none":
        return "no defense"
    attacks, defenses = _registries()
    for reg in (attacks, defenses):
        if name in reg and getattr(reg[name], "label", ""):
            return reg[name].label
    return name


def color(name: str) -> str:
    """The method's colour (hex), the same in every figure."""
    if name in COLORS:
        return COLORS[name]
    return _FALLBACK[sum(map(ord, name)) % len(_FALLBACK)]


def palette(names) -> dict:
    """label → colour for a figure's legend (seaborn's ``palette=``)."""
    return {label(n): color(n) for n in names}


class _Labels(dict):
    """A read-only mapping name → label backed by :func:`label` (for ``LABELS.get(m, m)`` in notebooks)."""

    def get(self, key, default=None):
        return label(key)

    def __getitem__(self, key):
        return label(key)


LABELS = _Labels()
