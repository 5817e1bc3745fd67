"""The built-in rewards, registered under their names. The package imports this module, so `rewards.get(name)`
finds them; the registry itself imports no reward module (the rewards that look names up, `weighted` and the
scorers, import the registry)."""
from __future__ import annotations

from rewards.answers import (
    make_exact_answer,
    make_gsm8k_answer,
    make_math_equivalence,
    make_numeric_answer,
    make_numeric_closeness,
)
from rewards.code import make_python_tests
from rewards.combine import make_weighted
from rewards.format import make_format_tags, make_regex
from rewards.judge import make_llm_judge, make_llm_judge_group
from rewards.length import make_cosine_length, make_length, make_repetition
from rewards.registry import register
from rewards.similarity import make_similarity
from rewards.structured import make_json_schema, make_json_valid

register(
    "numeric_answer", make_numeric_answer,
    "1.0 if the completion's final number equals the reference number (within a tolerance), else 0.0. Reads the "
    r"last \boxed{}, <answer> tag, number after 'the answer is', or else the last number; understands 1,234, "
    "unicode minus, 1/2 and number words.",
    '>>> rewards.get("numeric_answer")(["17 + 25 = 42", "43", ""], answer=["42", "42", "42"])\n[1.0, 0.0, 0.0]',
    "answer",
)
register(
    "numeric_closeness", make_numeric_closeness,
    "Partial credit for a numeric answer: 1.0 when right, and for a wrong number up to `partial` (0.5) by how close "
    "it is: the share of its digits that match the reference's (mode digits) or 1 − distance / scale (mode "
    "distance). Gives GRPO a signal in groups where every answer is wrong; keep numeric_answer as the accuracy.",
    '>>> rewards.get("numeric_closeness")(["54", "44", "x"], answer=["54", "54", "54"])\n[1.0, 0.25, 0.0]',
    "answer",
)
register(
    "exact_answer", make_exact_answer,
    "1.0 if the answer (tag, box, or sentence after 'the answer is') equals the reference string after SQuAD-style "
    "normalisation (case, punctuation, articles, spaces); the reference may list several accepted answers.",
    '>>> rewards.get("exact_answer")(["The answer is Paris.", "Lyon"], answer=["paris", "Paris"])\n[1.0, 0.0]',
    "answer",
)
register(
    "gsm8k_answer", make_gsm8k_answer,
    "GSM8K correctness: the number after the completion's '####' (or its final number) against the reference "
    "solution's '#### n', compared as numbers.",
    '>>> rewards.get("gsm8k_answer")(["... so 72 in all.\\n#### 72"], answer=["48 + 24 = 72\\n#### 72"])\n[1.0]',
    "answer",
)
register(
    "math_equivalence", make_math_equivalence,
    r"Mathematical equivalence checked by math-verify: LaTeX, \boxed{}, fractions, 0.5 vs 1/2 vs \frac{1}{2}. "
    "None when the reference does not parse.",
    '>>> rewards.get("math_equivalence")([r"$\\boxed{\\frac{1}{2}}$", "0.4"], answer=["0.5", "0.5"])\n[1.0, 0.0]',
    "answer",
)
register(
    "format_tags", make_format_tags,
    "Required tagged sections in order, e.g. <reasoning>…</reasoning><answer>…</answer>: strict (nothing else), "
    "soft (text around allowed) or partial credit. Sections may span lines; repeated or nested tags fail.",
    '>>> rewards.get("format_tags")(["<reasoning>\\n17 + 25\\n</reasoning>\\n<answer>42</answer>", "42"])\n[1.0, 0.0]',
    "format",
)
register(
    "regex", make_regex,
    "match_score if the completion matches a regular expression (search, match, fullmatch or count), else "
    "miss_score. DOTALL by default.",
    '>>> rewards.get("regex", pattern=r"^<think>.+</think>", mode="match")(["<think>\\nhm\\n</think> 42", "42"])\n'
    "[1.0, 0.0]",
    "format",
)
register(
    "length", make_length,
    "Length shaping: DAPO's soft too-long penalty (0 until max_length - buffer, down to -1 at max_length) or "
    "closeness to a target length. In chars, words or tokens.",
    '>>> rewards.get("length", max_length=100, buffer=20)(["x" * 50, "x" * 90, "x" * 200])\n[0.0, -0.5, -1.0]',
    "length",
)
register(
    "cosine_length", make_cosine_length,
    "Correctness scaled by length on a cosine schedule (open-r1): short correct answers 1.0, long correct 0.5, "
    "short wrong -1.0, long wrong -0.5. Orderings are checked (open-r1's config flips them).",
    '>>> rewards.get("cosine_length", max_len=100, correctness="numeric_answer")(["42", "41"], answer=["42", "42"])\n'
    "[0.999507, -0.999507]",
    "length",
)
register(
    "repetition", make_repetition,
    "Penalty for repeated n-grams: (1 - unique/total n-grams) * max_penalty, from 0 (no repeats) to max_penalty.",
    '>>> rewards.get("repetition", ngram_size=2)(["the cat sat on the mat", "go go go go go"])\n[0.0, -0.75]',
    "quality",
)
register(
    "json_valid", make_json_valid,
    "1.0 if the completion holds valid JSON (in a ```json fence, the whole text, or the {...} span), else 0.0.",
    '>>> rewards.get("json_valid")([\'{"a": 1}\', "{a: 1}"])\n[1.0, 0.0]',
    "structured",
)
register(
    "json_schema", make_json_schema,
    "1.0 if the completion's JSON validates against a JSON Schema (given once, or per row in a column), else 0.0.",
    '>>> schema = {"type": "object", "required": ["age"], "properties": {"age": {"type": "integer"}}}\n'
    '>>> rewards.get("json_schema", schema=schema)([\'{"age": 36}\', \'{"age": "36"}\'])\n[1.0, 0.0]',
    "structured",
)
register(
    "python_tests", make_python_tests,
    "Share of the row's test cases (asserts or stdin/stdout pairs from a column) passed by the completion's "
    "fenced Python code, each completion run in a fresh sandboxed process.",
    '>>> code = "```python\\ndef add(a, b):\\n    return a + b\\n```"\n'
    '>>> rewards.get("python_tests")([code], tests=[["assert add(1, 2) == 3", "assert add(2, 2) == 4"]])\n[1.0]',
    "code",
)
register(
    "similarity", make_similarity,
    "Similarity to a reference text in [0, 1]: token F1 (SQuAD), difflib character ratio, or token Jaccard.",
    '>>> rewards.get("similarity")(["The Eiffel Tower", "London"], answer=["Eiffel Tower", "Eiffel Tower"])\n'
    "[1.0, 0.0]",
    "similarity",
)
register(
    "weighted", make_weighted,
    "Weighted sum of other rewards (None parts skipped, as TRL's nansum does), for places that take one function.",
    '>>> both = rewards.get("weighted", rewards=[("numeric_answer", 1.0), ("format_tags", 0.5)])\n'
    '>>> both(["<reasoning>x</reasoning><answer>42</answer>", "42"], answer=["42", "42"])\n[1.5, 1.0]',
    "combine",
)
register(
    "llm_judge", make_llm_judge,
    "A model judges each completion against a rubric ({prompt}, {completion}, any column such as {reference}); "
    "the score it writes (a number on a scale, or a JSON field) is mapped to [0, 1]. A local model in its own "
    "process, or any OpenAI-compatible endpoint; concurrent, timed out, retried, cached; unreadable replies are "
    "reward errors.",
    '>>> judge = rewards.get("llm_judge", rubric="helpfulness", backend="openai",\n'
    '...                      base_url="http://127.0.0.1:8000/v1", model="judge")\n'
    '>>> judge.scale, rewards.judge.parse_score("Score: 8", judge.scale)\n([1, 10], 0.7777777777777778)',
    "judge",
)
register(
    "llm_judge_group", make_llm_judge_group,
    "A model sees all completions of one prompt together and scores each relative to the others (as RULER does): "
    "one judge call per GRPO group, a sharper group-relative signal. Same backends and safeguards as llm_judge.",
    '>>> rewards.judge.parse_group_scores("[10, 2, 5]", 3, [1, 10])\n[1.0, 0.1111111111111111, 0.4444444444444444]',
    "judge",
)
