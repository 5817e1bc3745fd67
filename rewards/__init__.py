"""Reward functions for reinforcement fine-tuning (GRPO), usable with or without the rest of RFT Workbench.

The contract
------------
A reward is a plain callable in TRL's GRPO form::

    def my_reward(completions, **kwargs) -> list[float | None]:
        ...

* `completions` holds the generated replies of one batch, as strings or in chat form
  (`[{"role": "assistant", "content": "..."}]`); `completion_text(c)` gives the text either way.
* `kwargs` holds `prompts` and **every dataset column** as a list aligned with `completions` (e.g. `answer`),
  and, during training, `completion_ids` and `trainer_state`.
* It returns one score per completion. `None` means "does not apply to this sample": TRL leaves it out of
  that reward (and of the weighted sum) instead of counting it as 0.
* Its `__name__` is its name in charts: TRL logs `rewards/<__name__>/mean`.

So every reward here can go straight into `trl.GRPOTrainer(reward_funcs=[...])`, and any TRL reward works here.

What is here
------------
* Built-ins, by name: `get(name, **params)` returns the reward, `available()` lists them with descriptions,
  parameters and examples. Answer correctness (`numeric_answer`, `exact_answer`, `gsm8k_answer`,
  `math_equivalence`), format (`format_tags`, `regex`), length (`length`, `cosine_length`), `repetition`,
  JSON (`json_valid`, `json_schema`), code (`python_tests`), `similarity`, and `weighted` combinations.
  Each also has a `make_<name>(...)` factory and a picklable instance with default parameters.
* Your own code: `load_user_reward(source)` checks it (syntax, the function, its signature; errors name the
  line) and runs it in a sandboxed worker process (time, memory and CPU limits, its own folder, output
  captured). It isolates mistakes, not attackers.
* Safety in training: `guard(fn)` makes any reward never raise (errors → None, counted per reward);
  `dry_run`/`check_dry_run` test rewards on a few rows before a run; `check_failure_threshold` stops a run
  whose reward keeps failing.
* Scoring for tables and notebooks: `score(rows, [(reward, weight), ...])`, `group_advantages(totals)`, `batch_advantages(totals, group_size, scale_rewards)`.

>>> import rewards
>>> reward = rewards.get("numeric_answer")
>>> reward(["17 + 25 = 42", "43"], answer=["42", "42"]), reward.__name__
([1.0, 0.0], 'numeric_answer')

See docs/rewards.md for the full guide.
"""
from __future__ import annotations

from rewards import builtins as _builtins  # noqa: F401  (registers the built-in rewards)
from rewards import judge, rubrics
from rewards.answers import (
    ExactAnswer,
    Gsm8kAnswer,
    MathEquivalence,
    NumericAnswer,
    NumericCloseness,
    exact_answer,
    gsm8k_answer,
    make_exact_answer,
    make_gsm8k_answer,
    make_math_equivalence,
    make_numeric_answer,
    make_numeric_closeness,
    math_equivalence,
    numeric_answer,
)
from rewards.base import MissingColumnError, Reward
from rewards.code import PythonTests, extract_code, make_python_tests
from rewards.combine import Weighted, make_weighted
from rewards.format import FormatTags, Regex, format_tags, make_format_tags, make_regex
from rewards.guard import (
    GuardedReward,
    RewardFailureThresholdExceeded,
    check_failure_threshold,
    guard,
    reward_name,
    unique_names,
)
from rewards.judge import LLMGroupJudge, LLMJudge, judge_reply, make_llm_judge, make_llm_judge_group
from rewards.length import CosineLength, Length, Repetition, make_cosine_length, make_length, make_repetition
from rewards.registry import RewardInfo, RewardNotFound, available, exists, get, info, register
from rewards.sandbox import (
    RewardCodeError,
    SandboxedReward,
    close_all,
    find_reward_function,
    load_user_reward,
    load_user_reward_file,
)
from rewards.scoring import (
    DryRunError,
    DryRunResult,
    ScoreTable,
    batch_advantages,
    check_dry_run,
    dry_run,
    group_advantages,
    score,
)
from rewards.similarity import Similarity, make_similarity
from rewards.structured import JsonSchema, JsonValid, json_valid, make_json_schema, make_json_valid
from rewards.templates import EXAMPLES, USER_REWARD_TEMPLATE
from rewards.text import (
    answer_region,
    completion_text,
    extract_number,
    last_boxed,
    normalize_answer,
    prompt_text,
    reference_number,
)

__all__ = [
    # registry
    "get", "available", "exists", "info", "register", "RewardInfo", "RewardNotFound",
    # user code and safety
    "load_user_reward", "load_user_reward_file", "SandboxedReward", "RewardCodeError", "find_reward_function",
    "close_all", "guard", "GuardedReward", "check_failure_threshold", "RewardFailureThresholdExceeded",
    "dry_run", "check_dry_run", "DryRunResult", "DryRunError",
    # scoring
    "score", "ScoreTable", "group_advantages", "batch_advantages",
    # helpers
    "completion_text", "prompt_text", "answer_region", "extract_number", "reference_number", "last_boxed",
    "normalize_answer", "extract_code", "reward_name", "unique_names", "Reward", "MissingColumnError",
    "USER_REWARD_TEMPLATE", "EXAMPLES",
    # factories and classes
    "make_numeric_answer", "make_numeric_closeness", "make_exact_answer", "make_gsm8k_answer", "make_math_equivalence", "make_format_tags",
    "make_regex", "make_length", "make_cosine_length", "make_repetition", "make_json_valid", "make_json_schema",
    "make_python_tests", "make_similarity", "make_weighted", "make_llm_judge", "make_llm_judge_group",
    # model judges
    "judge", "rubrics", "judge_reply", "LLMJudge", "LLMGroupJudge",
    "NumericAnswer", "NumericCloseness", "ExactAnswer", "Gsm8kAnswer", "MathEquivalence", "FormatTags", "Regex", "Length",
    "CosineLength", "Repetition", "JsonValid", "JsonSchema", "PythonTests", "Similarity", "Weighted",
    # ready-made instances
    "numeric_answer", "exact_answer", "gsm8k_answer", "math_equivalence", "format_tags", "json_valid",
]
