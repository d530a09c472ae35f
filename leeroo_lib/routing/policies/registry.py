"""The policy registry: a policy class registers itself where it is defined (``@register_policy``), so adding a
policy is one class in one file. A class is recorded under its class name (what a saved orchestrator records)
and under the names a profile calls it by (what ``build`` reads).

A class registers when its module is imported, and a look-up imports this package's policy modules one at a
time, lightest first, only until it finds the name: resolving a baseline imports no torch.
"""

from __future__ import annotations

import importlib

from .base import Policy

# the modules of this package whose classes register, lightest first: the baselines read no model
MODULES = ("baselines", "embedding", "neural")

CLASSES: dict[str, type[Policy]] = {}  # class name -> class
NAMED: dict[str, type[Policy]] = {}  # a profile's name -> class


def register_policy(*names: str):
    """Class decorator: record the class under its class name and under ``names``, one per way a profile sets it
    up (the causal LM in full precision and in 4 bits); none for a class no profile builds (the oracle)."""

    def register(cls: type[Policy]) -> type[Policy]:
        taken = {name: NAMED[name].__name__ for name in names if NAMED.get(name, cls) is not cls}
        if taken:
            raise ValueError(f"{cls.__name__} takes policy names already registered: {taken}")
        CLASSES[cls.__name__] = cls
        NAMED.update(dict.fromkeys(names, cls))
        return cls

    return register


def _look_up(table: dict[str, type[Policy]], key: str) -> type[Policy] | None:
    """``table[key]``, importing the policy modules in order until one registers it; None when none does."""
    for module in MODULES:
        if key in table:
            break
        importlib.import_module(f"{__package__}.{module}")
    return table.get(key)


def policy_class(kind: str) -> type[Policy]:
    """The class of a policy kind, by class name, e.g. ``policy_class("EncoderPolicy")``."""
    cls = _look_up(CLASSES, kind)
    if cls is None:
        raise ValueError(f"unknown policy kind {kind!r}; known kinds: {sorted(CLASSES)}")
    return cls


def policy_named(name: str) -> type[Policy]:
    """The class a profile's policy name stands for, e.g. ``policy_named("leeroo-stacked")``."""
    cls = _look_up(NAMED, name)
    if cls is None:
        raise ValueError(f"unknown policy {name!r}; known policies: {', '.join(NAMED)}")
    return cls
