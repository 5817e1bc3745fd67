"""The decision tree: every leaf reachable, paragraphs cite the reasons, unanswered questions, the drawing."""
from __future__ import annotations

import pytest

from app.engine import methods
from app.engine.advice.decision import (
    QUESTIONS,
    Answers,
    answers_from_profile,
    recommend,
    tree_nodes,
)
from app.engine.core.spec import RunSpec
from app.engine.data.profile import profile_dataset
from app.engine.presentation.decision_tree import PATH_COLOR, _layout, tree_figure

BASE = dict(has_preferences=False, has_labels=True, verifiable=True)

# (leaf id, answers, method, phrase the paragraph must contain)
LEAF_CASES = [
    ("dpo_pairs", Answers(has_preferences=True), "dpo", "preference pairs"),
    ("dpo_collect", Answers(has_preferences=False, has_labels=False, verifiable=False, model_can_judge=False), "dpo",
     "human judgement"),
    ("grpo_judge", Answers(has_preferences=False, has_labels=False, verifiable=False, model_can_judge=True), "grpo",
     "judge calls per step"),
    ("grpo_unlabelled", Answers(has_preferences=False, has_labels=False, verifiable=True, rewards=["json_valid"]),
     "grpo", "needs no labelled answers"),
    ("prefix_rft_few", Answers(**BASE, n_examples=40, has_demonstrations=True), "prefix_rft", "fewer than 100"),
    ("grpo_few", Answers(**BASE, n_examples=40, has_demonstrations=False, rewards=["numeric_answer"]), "grpo",
     "labels are scarce"),
    ("prefix_rft", Answers(**BASE, n_examples=5000, reasoning_helps=True, has_demonstrations=True), "prefix_rft",
     "worked demonstration"),
    ("dft", Answers(**BASE, n_examples=5000, reasoning_helps=True, has_demonstrations=False), "dft",
     "math and reasoning"),
    ("sft_short", Answers(**BASE, n_examples=5000, reasoning_helps=False), "sft", "low-entropy"),
    ("dft_open", Answers(has_preferences=False, has_labels=True, verifiable=False, reasoning_helps=True), "dft",
     "reasoning-heavy"),
    ("sft_open", Answers(has_preferences=False, has_labels=True, verifiable=False, reasoning_helps=False), "sft",
     "factual"),
]


def _edges() -> set[tuple[str, str]]:
    return {(node.id, branch.target) for node in tree_nodes() for branch in node.branches}


def test_cases_cover_every_leaf() -> None:
    leaves = {node.id for node in tree_nodes() if node.is_leaf}
    assert leaves == {case[0] for case in LEAF_CASES}


@pytest.mark.parametrize("leaf, answers, method, phrase", LEAF_CASES, ids=[c[0] for c in LEAF_CASES])
def test_every_leaf(leaf: str, answers: Answers, method: str, phrase: str) -> None:
    rec = recommend(answers)
    assert rec.path[0] == "preferences" and rec.path[-1] == leaf
    assert set(zip(rec.path, rec.path[1:])) <= _edges()
    assert rec.method == method
    assert phrase in rec.paragraph
    assert rec.missing == []  # every question on the path was answered
    assert "Assumed" not in rec.paragraph
    assert rec.alternatives and all(m in methods.keys() for m, _ in rec.alternatives)  # trainable methods
    spec = RunSpec.from_dict(rec.spec_overrides)  # the overrides name real RunSpec fields
    assert spec.method == method


def test_paragraph_cites_the_answers() -> None:
    rec = recommend(Answers(**BASE, n_examples=40, has_demonstrations=False, rewards=["numeric_answer"]))
    assert "fewer than 100 labelled examples (40)" in rec.paragraph
    assert "a program can check" in rec.paragraph
    assert rec.suggested_rewards == ["numeric_answer"]
    assert "numeric_answer" in rec.paragraph


def test_rl_overrides_are_runnable_on_a_small_model() -> None:
    answers = Answers(**BASE, n_examples=40, has_demonstrations=False, rewards=["gsm8k_answer", "numeric_answer"])
    rec = recommend(answers)
    spec = RunSpec.from_dict(rec.spec_overrides)
    assert [r.name for r in spec.rewards] == ["gsm8k_answer"]
    assert spec.training.per_device_train_batch_size % spec.generation.num_generations == 0
    assert spec.generation.num_generations >= 2


def test_reasoning_gets_room_to_think() -> None:
    short = recommend(Answers(**BASE, n_examples=40, reasoning_helps=False))
    long = recommend(Answers(**BASE, n_examples=40, reasoning_helps=True))
    length = "max_completion_length"
    assert long.spec_overrides["generation"][length] > short.spec_overrides["generation"][length]


def test_non_verifiable_and_dpo_get_no_rewards() -> None:
    assert recommend(Answers(has_preferences=True, rewards=["numeric_answer"])).suggested_rewards == []
    assert recommend(Answers(has_labels=True, verifiable=False, rewards=["similarity"])).suggested_rewards == []
    assert "rewards" not in recommend(Answers(has_preferences=True)).spec_overrides


def test_nothing_answered_gives_the_most_likely_branch_and_lists_what_matters() -> None:
    rec = recommend(Answers())
    assert rec.method == "sft"
    assert "Assumed because not answered" in rec.paragraph
    assert {"has_preferences", "has_labels", "verifiable"} <= set(rec.missing)
    assert all(m in QUESTIONS for m in rec.missing)
    assert QUESTIONS["verifiable"] in rec.paragraph


def test_missing_lists_only_questions_that_change_the_method() -> None:
    rec = recommend(Answers(**BASE, reasoning_helps=True, has_demonstrations=False))  # n_examples unknown
    assert rec.method == "dft"  # assumed 100 or more
    assert rec.missing == ["n_examples"]  # fewer would mean GRPO / Prefix-RFT
    assert "100 or more labelled examples" in rec.paragraph
    assert "100 or more labelled examples (" not in rec.paragraph  # no count was given

    rec = recommend(Answers(has_preferences=True, has_labels=None, verifiable=None))
    assert rec.method == "dpo" and rec.missing == []  # nothing below the preference question is visited


def test_unanswered_demonstrations_with_few_examples() -> None:
    rec = recommend(Answers(**BASE, n_examples=10))
    assert rec.method == "grpo" and rec.missing == ["has_demonstrations"]


def test_answers_from_profile_gsm8k_like() -> None:
    rows = [
        {"question": f"Sam has {a} pens and buys {a + 2} more. How many pens now?",
         "answer": f"Sam starts with {a} pens.\nHe buys {a + 2}, so {a} + {a + 2} = {2 * a + 2}.\n#### {2 * a + 2}"}
        for a in range(30)
    ]
    answers, why = answers_from_profile(profile_dataset(rows))
    assert answers == Answers(has_labels=True, verifiable=True, n_examples=30, reasoning_helps=True,
                              has_demonstrations=True, has_preferences=False,
                              rewards=["gsm8k_answer", "numeric_answer"])
    assert set(why) == set(QUESTIONS)
    assert "####" in why["verifiable"]
    rec = recommend(answers)
    assert rec.method == "prefix_rft" and rec.path[-1] == "prefix_rft_few"
    assert rec.spec_overrides["rewards"] == [{"name": "gsm8k_answer", "weight": 1.0}]


def test_answers_from_profile_preferences_and_text() -> None:
    pairs = [{"prompt": f"Say hi {i}", "chosen": "Hello!", "rejected": "Go away."} for i in range(5)]
    answers, why = answers_from_profile(profile_dataset(pairs))
    assert answers.has_preferences is True and recommend(answers).method == "dpo"
    assert "preference pairs" in why["has_preferences"]

    text = [{"text": f"Once upon a time there was a story number {i}. It went on and on."} for i in range(5)]
    answers, why = answers_from_profile(profile_dataset(text))
    assert answers.has_labels is True and answers.verifiable is False
    assert recommend(answers).method == "sft"


def test_answers_from_profile_unlabelled_prompts_leave_verifiable_open() -> None:
    answers, _ = answers_from_profile(profile_dataset([{"prompt": f"Write a haiku about {i}"} for i in range(5)]))
    assert answers.has_labels is False and answers.verifiable is None
    rec = recommend(answers)
    assert "verifiable" in rec.missing


def test_tree_nodes_are_consistent() -> None:
    nodes = tree_nodes()
    ids = [n.id for n in nodes]
    assert len(ids) == len(set(ids)) and ids[0] == "preferences"
    for node in nodes:
        if node.is_leaf:
            assert node.title and node.rationale and not node.branches
        else:
            assert node.field in QUESTIONS and node.question == QUESTIONS[node.field]
            assert {b.value for b in node.branches} == {True, False}
            assert node.default in (True, False)


def test_tree_figure_highlights_the_path() -> None:
    rec = recommend(LEAF_CASES[4][1])
    fig = tree_figure(rec.path)
    pos = _layout()
    traces = {t.name: t for t in fig.data}
    chosen = traces["chosen path"]
    points = {(x, y) for x, y in zip(chosen.x, chosen.y) if x is not None}
    assert points == {pos[node_id] for node_id in rec.path}
    assert len([x for x in chosen.x if x is None]) == len(rec.path) - 1  # one segment per edge
    highlighted = [a for a in fig.layout.annotations if a.bgcolor == PATH_COLOR]
    assert len(highlighted) == len(rec.path)
    assert all(n.short.split("<br>")[0] in " ".join(a.text for a in fig.layout.annotations) for n in tree_nodes())


def test_tree_figure_without_path() -> None:
    fig = tree_figure()
    traces = {t.name: t for t in fig.data}
    assert len(traces["chosen path"].x) == 0
    assert not [a for a in fig.layout.annotations if a.bgcolor == PATH_COLOR]
    assert len(traces["nodes"].x) == len(tree_nodes())


def test_tree_layout_leaves_room_for_every_label() -> None:
    pos = _layout()
    by_row: dict[float, list[float]] = {}
    for x, y in pos.values():
        by_row.setdefault(y, []).append(x)
    for xs in by_row.values():
        xs.sort()
        assert all(b - a >= 1 for a, b in zip(xs, xs[1:]))  # one unit apart on every row
    assert all(len(line) <= 11 for n in tree_nodes() for line in n.short.split("<br>"))


def test_recommendations_cite_the_measured_comparison_where_it_applies() -> None:
    """The leaves the method comparison bears on name its numbers and the page that holds them."""
    from pathlib import Path

    from app.engine.advice.decision import EVIDENCE, MEASURED_DOC

    assert (Path(__file__).resolve().parents[1] / MEASURED_DOC).exists()
    for leaf, answers, _method, _phrase in LEAF_CASES:
        rec = recommend(answers)
        if leaf in EVIDENCE:
            assert rec.evidence == EVIDENCE[leaf] and EVIDENCE[leaf] in rec.paragraph and MEASURED_DOC in rec.paragraph
        else:
            assert rec.evidence is None and MEASURED_DOC not in rec.paragraph
    assert {"grpo_few", "prefix_rft", "dft", "sft_short"} <= set(EVIDENCE)


def test_rlaif_branch_carries_a_judge_reward_into_a_valid_runspec() -> None:
    """No labels, nothing a program can check: a model judge with GRPO is offered beside DPO / KTO, with its cost."""
    from app.engine.advice import presets

    collect = recommend(Answers(has_preferences=False, has_labels=False, verifiable=False))
    assert collect.method == "dpo" and "model_can_judge" in collect.missing
    assert any(m == "grpo" and "judge calls per step" in why for m, why in collect.alternatives)
    assert {"kto", "sft"} <= {m for m, _ in collect.alternatives}
    judge = recommend(Answers(has_preferences=False, has_labels=False, verifiable=False, model_can_judge=True))
    assert judge.method == "grpo" and judge.suggested_rewards == ["llm_judge"]
    assert "16 judge calls per step (2 with llm_judge_group)" in judge.paragraph
    assert {m for m, _ in judge.alternatives} == {"dpo", "kto"}
    spec = presets.recommended_spec(judge, gpu=False)
    spec.validate()
    (reward,) = spec.rewards
    assert reward.name == "llm_judge" and reward.params["rubric"] == "helpfulness"
