"""Attacks behind one interface: ``ATTACKS[name](config or overrides).generate(data) -> Poison``."""

from . import ap, ar, dc, em, entf, gue, lsp, miue, ntga, ops, random_noise, rem, tue  # noqa: F401  (importing registers them)
from .base import ATTACKS, Attack, AttackConfig, register


def create_attack(name: str, **overrides) -> Attack:
    """The attack registered as ``name`` with its paper defaults, overridden by ``overrides``."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    return ATTACKS[name](**overrides)


__all__ = ["ATTACKS", "Attack", "AttackConfig", "create_attack", "register"]
