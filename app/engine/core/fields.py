"""What every RunSpec section is made of: documented fields, the one error type, and the small checks that
section validators share. No other engine import, so method modules can define their sections with it."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any, Callable

BACKENDS = ("auto", "unsloth", "trl")  # values of RunSpec.backend
DTYPES = ("auto", "float32", "bfloat16", "float16")  # values of RunSpec.dtype
STRATEGIES = ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3")  # values of RunSpec.distributed.strategy
VLLM_MODES = ("off", "colocate", "server")  # values of RunSpec.generation.vllm (TRL's use_vllm / vllm_mode)


class SpecError(ValueError):
    """A RunSpec problem, with the dotted field name it concerns."""

    def __init__(self, field_name: str, problem: str):
        self.field = field_name
        self.problem = problem
        super().__init__(f"{field_name}: {problem}")


def spec_field(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its `help` text (shown in the UI and by `python -m app.train --help-spec`)."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


Complain = Callable[[str, str], None]  # bad(field, problem): how a validator reports one problem


def finite(value: Any) -> bool:
    """A real number, not NaN or ±inf (comparisons with NaN are all False, so `x > 0` alone lets NaN through)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_positive_int(bad: Complain, name: str, value: Any) -> None:
    if not isinstance(value, int) or value <= 0:
        bad(name, f"must be a positive integer, got {value!r}")


def collector() -> tuple[list[SpecError], Complain]:
    """(problems, bad): `bad(field, problem)` appends a SpecError to `problems`."""
    problems: list[SpecError] = []
    return problems, lambda name, problem: problems.append(SpecError(name, problem))
