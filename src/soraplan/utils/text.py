"""Small wording helpers for what the commands print."""

from __future__ import annotations


def counted(number: int, noun: str) -> str:
    """``number`` with ``noun`` in the right number: "1 step", "4 steps" (a one-step student exists)."""
    return f"{number} {noun}" + ("" if number == 1 else "s")
