"""Attacks behind one interface: ``ATTACKS[name](config or overrides).generate(data) -> Poison``."""

# importing registers them, in this order: the order of ATTACKS, which is the book's order of methods
from . import em, ap, ar, gue, dc, entf, lsp, miue, ntga, one_pixel_shortcut, random_noise, rem, tue  # noqa: F401,I001
from .base import ATTACKS, Attack, AttackConfig, register


def create_attack(name: str, **overrides) -> Attack:
    """The attack registered as ``name`` with its paper defaults, overridden by ``overrides``."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    return ATTACKS[name](**overrides)


__all__ = ["ATTACKS", "Attack", "AttackConfig", "create_attack", "register"]
