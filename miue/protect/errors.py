"""The error protect and verify raise on bad input, and the counted nouns their messages use."""

from __future__ import annotations


class ProtectError(ValueError):
    """Bad input to protect or verify: the message says what is wrong and what to do."""


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"
