"""The training methods, one module each, behind one protocol (`base.TrainingMethod`).

Every module of this package that defines `METHODS` (a tuple of TrainingMethod instances) is registered: adding a
method is adding its module (see docs/architecture.md). Everything else asks the registry:

    get("grpo").build_trainer(parts)     all() in display order     keys()     with_section()
"""
from __future__ import annotations

import importlib
import pkgutil

from app.engine.methods.base import (
    EvalContext,
    MethodCharts,
    TrainerParts,
    TrainingMethod,
)

_REGISTRY: dict[str, TrainingMethod] = {}


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for method in getattr(module, "METHODS", ()):
            if method.key in _REGISTRY:
                raise RuntimeError(f"two training methods are called {method.key!r}")
            _REGISTRY[method.key] = method


def all() -> list[TrainingMethod]:  # noqa: A001 (the registry's vocabulary: methods.all())
    """Every method, in display order."""
    return sorted(_REGISTRY.values(), key=lambda m: (m.order, m.key))


def keys() -> tuple[str, ...]:
    return tuple(m.key for m in all())


def get(key: str) -> TrainingMethod:
    """The method called `key`; KeyError naming the known ones otherwise."""
    try:
        return _REGISTRY[key]
    except KeyError:
        raise KeyError(f"unknown method {key!r}; choose one of {', '.join(keys())}") from None


def find(key: str) -> TrainingMethod | None:
    return _REGISTRY.get(key)


def with_section() -> list[TrainingMethod]:
    """Methods that own a RunSpec section, in display order (RunSpec has one field per section)."""
    return [m for m in all() if m.section]


def rl_keys() -> tuple[str, ...]:
    """Methods that sample completions and score them with rewards."""
    return tuple(m.key for m in all() if m.uses_rewards)


_discover()

__all__ = ["TrainingMethod", "TrainerParts", "EvalContext", "MethodCharts", "all", "keys", "get", "find",
           "with_section", "rl_keys"]
