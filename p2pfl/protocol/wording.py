"""How a wrong value reads in an error message (shared by the codec and the consortium ID)."""

from __future__ import annotations


def a_type(value: object) -> str:
    """'a list', 'an int': the article and type name of `value`."""
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiouAEIOU" else f"a {name}"


def short(value: object) -> str:
    """repr(value), cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
