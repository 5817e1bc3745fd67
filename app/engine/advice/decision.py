"""Which fine-tuning method fits: the decision tree as data, a pure `recommend()`, and a drawing of the tree.

The tree (question nodes ask one `Answers` field; "default" is the branch assumed when it is unanswered):

    preferences  Does the data hold preference pairs (prompt / chosen / rejected)?       default: no
      yes -> dpo_pairs         DPO on the pairs.
      no  -> labels  Do you have labelled answers (or target completions)?                default: yes
        no  -> verifiable_unlabelled  Can a program check a completion?                  default: yes
          yes -> grpo_unlabelled   GRPO: the reward is the only signal needed.
          no  -> judge  Could a model grade a reply against a written rubric?             default: no
            yes -> grpo_judge      GRPO with an LLM judge as the reward (RLAIF).
            no  -> dpo_collect     Collect human preferences, then DPO (RLHF); KTO beside it.
        yes -> verifiable  Can a program check a completion against the label?           default: no
          yes -> few  Fewer than FEW_EXAMPLES (100) labelled examples?                    default: no
            yes -> demos_few  Do the labels include worked demonstrations?                default: no
              yes -> prefix_rft_few    Prefix-RFT: RL from few examples, guided by the demonstrations.
              no  -> grpo_few          GRPO: RFT wins when labels are scarce.
            no  -> reasoning  Does step-by-step reasoning help?                           default: yes
              yes -> demos  Do the labels include worked demonstrations?                  default: no
                yes -> prefix_rft      Prefix-RFT (alternative: SFT, then GRPO).
                no  -> dft             DFT: generalises better than SFT on math / reasoning.
              no  -> sft_short         SFT: short, low-entropy answers gain nothing from DFT.
          no  -> reasoning_open  Does step-by-step reasoning help?                        default: no
            yes -> dft_open            DFT on the reasoning-heavy completions.
            no  -> sft_open            SFT on the (factual / short) completions.

An unanswered question takes its default branch; `Recommendation.missing` lists the unanswered questions on the
path whose other branch leads to a different method. app/engine/presentation/decision_tree.py draws the tree.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from app.engine import methods
from app.engine.data.profile import DatasetProfile

FEW_EXAMPLES = 100  # below this many labelled examples RFT beats imitation (SFT memorises)
LONG_COMPLETION_TOKENS = 256  # room for a worked solution when reasoning helps
SHORT_COMPLETION_TOKENS = 32  # a direct answer
LORA_LEARNING_RATE = 2e-4  # LoRA on a ~135M model for tens of steps on a CPU (as in recipes/)
DPO_LEARNING_RATE = 5e-5  # preference optimisation drifts fast: a smaller step
MAX_STEPS = 40
BATCH_SIZE = 16  # a multiple of NUM_GENERATIONS (GRPO requires it)
DPO_BATCH_SIZE = 8  # each row is a pair: two sequences
MAX_LENGTH_SHORT = 256  # prompt + direct answer, in tokens
MAX_LENGTH_LONG = 512  # prompt + worked solution
NUM_GENERATIONS = 8

METHOD_NAMES = {m.key: m.label for m in methods.all()}
QUESTIONS: dict[str, str] = {
    "has_preferences": "Does the data hold preference pairs (a prompt with a chosen and a rejected reply)?",
    "has_labels": "Do you have labelled answers or target completions for your prompts?",
    "verifiable": "Can a program check whether a completion is correct (a number, a test, a format)?",
    "n_examples": "How many labelled examples do you have?",
    "reasoning_helps": "Does working step by step (chain-of-thought) help on this task?",
    "has_demonstrations": "Do the labels include worked demonstrations (reasoning that leads to the answer)?",
    "model_can_judge": "Could a model grade a reply against a rubric you can write (helpfulness, tone, faithfulness)?",
}
# GRPO's judge calls per step with the defaults below: one per completion, or one per group with llm_judge_group.
JUDGE_CALLS = f"{BATCH_SIZE} judge calls per step ({BATCH_SIZE // NUM_GENERATIONS} with llm_judge_group)"
JUDGE_REWARD = {"name": "llm_judge", "weight": 1.0,
                "params": {"rubric": "helpfulness", "scale": [1, 10], "backend": "local", "model": "default"}}


@dataclass
class Answers:
    """The user's answers to the tree's questions; None means not answered (the default branch is assumed)."""

    has_labels: bool | None = None  # labelled answers / target completions exist
    verifiable: bool | None = None  # a program can check a completion
    n_examples: int | None = None  # labelled examples (rows, when unlabelled)
    reasoning_helps: bool | None = None  # chain-of-thought helps on the task
    has_demonstrations: bool | None = None  # labels include worked solutions
    has_preferences: bool | None = None  # rows are prompt / chosen / rejected pairs
    model_can_judge: bool | None = None  # a model could grade replies against a rubric (RLAIF)
    rewards: list[str] | None = None  # not a question: registry rewards that check the answers (from the profile)


@dataclass(frozen=True)
class Branch:
    """An edge: taken when the node's question is answered `value`."""

    value: bool  # for n_examples: whether n_examples < FEW_EXAMPLES
    label: str  # edge label in the drawing
    target: str  # id of the child node
    phrase: str  # clause for the recommendation paragraph, e.g. "you have labelled answers"


@dataclass(frozen=True)
class Node:
    """A question (field + branches) or a leaf (method + explanation)."""

    id: str
    short: str  # label in the drawing ("<br>" breaks lines)
    question: str | None = None  # full question text (question nodes)
    field: str | None = None  # the Answers field the question reads
    default: bool | None = None  # branch value assumed when the field is unanswered
    branches: tuple[Branch, ...] = ()
    method: str | None = None  # leaves: sft, dft, grpo, prefix_rft or dpo
    title: str | None = None  # leaves: headline of the recommendation
    rationale: str | None = None  # leaves: why the method fits
    alternatives: tuple[tuple[str, str], ...] = ()  # leaves: (method, when it would be the better choice)

    @property
    def is_leaf(self) -> bool:
        return self.method is not None


@dataclass
class Recommendation:
    """The method the tree recommends for some answers, and why."""

    method: str  # sft, dft, grpo, prefix_rft or dpo
    title: str
    paragraph: str  # why, citing the answers (assumed ones marked)
    path: list[str]  # node ids from the root to the leaf
    alternatives: list[tuple[str, str]]  # (method, why)
    suggested_rewards: list[str]  # registry reward names (training rewards for RL, evaluation otherwise)
    missing: list[str]  # unanswered Answers fields whose answer could change the method
    spec_overrides: dict[str, Any]  # RunSpec fields (nested by section) that suit the method on a small model
    evidence: str | None = None  # what this project measured about the choice (docs/method-comparison.md)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _question(node_id: str, short: str, field_name: str, default: bool, yes: tuple[str, str], no: tuple[str, str],
              labels: tuple[str, str] = ("yes", "no")) -> Node:
    """A yes/no node; `yes`/`no` are (target id, paragraph phrase)."""
    return Node(
        id=node_id, short=short, question=QUESTIONS[field_name], field=field_name, default=default,
        branches=(Branch(True, labels[0], yes[0], yes[1]), Branch(False, labels[1], no[0], no[1])),
    )


_NODES: tuple[Node, ...] = (
    _question("preferences", "Preference<br>pairs?", "has_preferences", False,
              ("dpo_pairs", "the data holds preference pairs (chosen and rejected replies)"),
              ("labels", "the data holds no preference pairs")),
    Node("dpo_pairs", "DPO<br>(pairs)", method="dpo", title="DPO on your preference pairs",
         rationale="DPO learns directly from which reply was preferred, with no reward function and no separate "
         "reward model to train.",
         alternatives=(("sft", "SFT on the chosen replies only, if the rejected ones are of little use."),)),
    _question("labels", "Labelled<br>answers?", "has_labels", True,
              ("verifiable", "you have labelled answers"), ("verifiable_unlabelled", "you have no labelled answers")),
    _question("verifiable_unlabelled", "Program<br>can check?", "verifiable", True,
              ("grpo_unlabelled", "a program can check whether a completion is correct"),
              ("judge", "no program can check a completion")),
    _question("judge", "Model<br>can judge?", "model_can_judge", False,
              ("grpo_judge", "a model could grade replies against a rubric"),
              ("dpo_collect", "grading needs a person")),
    Node("grpo_judge", "GRPO<br>(LLM judge)", method="grpo", title="GRPO with an LLM judge (RLAIF)",
         rationale="a model grades each sampled reply against your rubric (the llm_judge reward) and GRPO learns "
         f"from those grades, with no labels and no person in the loop; it costs {JUDGE_CALLS}, so the judge's "
         "speed bounds the run's. The judge's quality bounds what the policy learns: use a judge much stronger than "
         "the model you tune (a 7B+ instruct model behind vLLM or Ollama, or a hosted one), and read its replies in "
         "the samples.",
         alternatives=(("dpo", "DPO on pairs a person picks, if no judge model is good enough or its grades do not "
                        "match yours: a few hundred pairs, no judge calls during training."),
                       ("kto", "KTO on 👍 / 👎 marks a person gives, the cheapest human signal to collect."))),
    Node("grpo_unlabelled", "GRPO<br>(no labels)", method="grpo", title="GRPO with a checking reward",
         rationale="GRPO needs no labelled answers: it samples several completions per prompt and the reward that "
         "checks them supplies the whole learning signal.",
         alternatives=(("prefix_rft", "Prefix-RFT, if you can write a few worked demonstrations."),)),
    Node("dpo_collect", "DPO<br>(collect)", method="dpo", title="Collect human preferences, then DPO (RLHF)",
         rationale="without labels or an automatic check the remaining signal is human judgement: sample two "
         "replies per prompt, let a person pick the better one, and train on those preference pairs with DPO.",
         alternatives=(("sft", "SFT, if you can write target completions instead."),
                       ("grpo", f"GRPO with an LLM judge (RLAIF), if a model can grade replies against a rubric: "
                        f"{JUDGE_CALLS}, no person in the loop."))),
    _question("verifiable", "Program<br>can check?", "verifiable", False,
              ("few", "a program can check a completion against the label"),
              ("reasoning_open", "no program can check a completion (free-form answers)")),
    _question("few", "Under 100<br>examples?", "n_examples", False,
              ("demos_few", "you have fewer than 100 labelled examples{count}"),
              ("reasoning", "you have 100 or more labelled examples{count}"), labels=("under 100", "100 or more")),
    _question("demos_few", "Worked<br>demos?", "has_demonstrations", False,
              ("prefix_rft_few", "the labels include worked demonstrations"),
              ("grpo_few", "the labels hold no worked demonstrations")),
    Node("prefix_rft_few", "Prefix-RFT<br>(few)", method="prefix_rft", title="Prefix-RFT guided by your demonstrations",
         rationale="with fewer than 100 examples imitation memorises, while RL from a checking reward keeps "
         "learning; Prefix-RFT lets the model continue from a prefix of each demonstration, shortened over training, "
         "so the demonstrations guide early rollouts and the reward does the rest.",
         alternatives=(("grpo", "Plain GRPO, if the demonstrations are of uneven quality."),)),
    Node("grpo_few", "GRPO<br>(few)", method="grpo", title="GRPO (reinforcement fine-tuning)",
         rationale="with fewer than 100 examples SFT tends to memorise them, whereas GRPO samples its own attempts "
         "and learns from the reward that checks them: RFT wins when labels are scarce and answers are checkable.",
         alternatives=(("sft", "SFT, if the base model almost never answers right (GRPO then has no signal)."),)),
    _question("reasoning", "Reasoning<br>helps?", "reasoning_helps", True,
              ("demos", "step-by-step reasoning helps"), ("sft_short", "the answers are short and direct")),
    _question("demos", "Worked<br>demos?", "has_demonstrations", False,
              ("prefix_rft", "the labels include worked demonstrations"),
              ("dft", "the labels hold final answers without worked demonstrations")),
    Node("prefix_rft", "Prefix-RFT", method="prefix_rft", title="Prefix-RFT: demonstrations and rewards together",
         rationale="demonstrations and a checking reward are both there, so Prefix-RFT uses both: the model "
         "continues from a prefix of a worked demonstration whose length decays over training, learning from "
         "imitation early and from the reward later.",
         alternatives=(("sft", "SFT on the demonstrations, then GRPO from that checkpoint (two runs)."),
                       ("dft", "DFT alone, if rollouts are too slow to sample."))),
    Node("dft", "DFT", method="dft", title="DFT (Dynamic Fine-Tuning)",
         rationale="DFT is SFT with each token's loss scaled by the model's own probability, and it generalises "
         "better than SFT on math and reasoning tasks; the checking reward still measures progress.",
         alternatives=(("grpo", "GRPO, if the base model already solves some problems (the reward then teaches)."),
                       ("sft", "SFT, if the answers turn out to be near-deterministic."))),
    Node("sft_short", "SFT<br>(short)", method="sft", title="SFT (supervised fine-tuning)",
         rationale="short, near-deterministic (low-entropy) answers such as factual replies are where plain SFT "
         "beats DFT, whose probability weighting helps little; the checking reward measures progress.",
         alternatives=(("grpo", "GRPO, if the model already answers some prompts correctly and labels are few."),)),
    _question("reasoning_open", "Reasoning<br>helps?", "reasoning_helps", False,
              ("dft_open", "step-by-step reasoning helps"), ("sft_open", "the answers are short or factual")),
    Node("dft_open", "DFT<br>(open)", method="dft", title="DFT (Dynamic Fine-Tuning)",
         rationale="without a reward, learning from the labelled completions is the way; on reasoning-heavy "
         "completions DFT generalises better than plain SFT.",
         alternatives=(("sft", "SFT, if the completions are short or factual."),
                       ("dpo", "DPO, once you can collect preferences between replies."))),
    Node("sft_open", "SFT<br>(open)", method="sft", title="SFT (supervised fine-tuning)",
         rationale="without a reward, learning from the labelled completions is the way, and for short or factual "
         "(low-entropy) answers plain SFT is better than DFT.",
         alternatives=(("dpo", "DPO, once you can collect preferences between replies."),)),
)
_BY_ID: dict[str, Node] = {node.id: node for node in _NODES}

# What the method comparison measured (python -m app.compare_methods --seeds 42,7,1234; docs/method-comparison.md),
# cited by the leaves it bears on. Three seeds of each method on one small task and model: evidence, not a law.
MEASURED_DOC = "docs/method-comparison.md"
_ARITHMETIC = ("Measured here on the built-in arithmetic task (SmolLM2-135M, 20 steps each, 3 seeds, 128 held-out "
               "questions, mean [95 % interval]")
_GRPO_MEASURED = (f"{_ARITHMETIC}, base 25 %): GRPO reached 60 % [36, 78] held-out accuracy against 25 % [17, 33] "
                  "for SFT and 31 % [23, 39] for DFT on the same step budget, a difference the paired test resolves; "
                  f"one seed of three peaked at 52 % and fell back to 34 %; see {MEASURED_DOC}.")
_PREFIX_MEASURED = (f"{_ARITHMETIC}): Prefix-RFT reached 57 % [25, 79] and GRPO 60 % [36, 78]: not resolved "
                    "(difference +3 points [−32, +39]); each failed on one seed of three. SFT-then-GRPO fell to 19 % "
                    "because its priming SFT on bare answers removed the worked format. Expect Prefix-RFT's gains where "
                    f"demonstrations are long and the base model rarely succeeds; see {MEASURED_DOC}.")
EVIDENCE: dict[str, str] = {
    "grpo_few": _GRPO_MEASURED,
    "grpo_unlabelled": _GRPO_MEASURED,
    "prefix_rft_few": _PREFIX_MEASURED,
    "prefix_rft": _PREFIX_MEASURED,
    "dft": (f"{_ARITHMETIC}): DFT reached 31 % [23, 39] and SFT 25 % [17, 33] after the same 20 steps, a gap the "
            f"paired test does not resolve (GRPO: 60 %); see {MEASURED_DOC}."),
    "sft_short": (f"{_ARITHMETIC}, short numeric answers): SFT stayed at 25 % (the base model's level) and DFT at "
                  f"31 %, while GRPO reached 60 %: when a program can check the answers, try GRPO too; see {MEASURED_DOC}."),
}
ROOT = "preferences"


def tree_nodes() -> list[Node]:
    """All nodes, root first, in depth-first order (yes-branch first)."""
    order: list[Node] = []

    def visit(node_id: str) -> None:
        node = _BY_ID[node_id]
        order.append(node)
        for branch in node.branches:
            visit(branch.target)

    visit(ROOT)
    return order


# -- recommending ---------------------------------------------------------------------------------------------
def _answer(node: Node, answers: Answers) -> bool | None:
    value = getattr(answers, node.field)
    if node.field == "n_examples" and value is not None:
        return value < FEW_EXAMPLES
    return value


def _methods_below(node_id: str) -> set[str]:
    node = _BY_ID[node_id]
    if node.is_leaf:
        return {node.method}
    return set().union(*(_methods_below(b.target) for b in node.branches))


def recommend(answers: Answers) -> Recommendation:
    """Walk the tree with `answers` (unanswered questions take their default branch) and explain the leaf."""
    path: list[str] = []
    phrases: list[str] = []  # the user's answers, as clauses
    assumed: list[str] = []  # default branches taken for unanswered questions
    missing: list[str] = []
    node = _BY_ID[ROOT]
    taken: list[tuple[Node, Branch]] = []
    while not node.is_leaf:
        path.append(node.id)
        value = _answer(node, answers)
        branch = next(b for b in node.branches if b.value == (node.default if value is None else value))
        phrase = branch.phrase.format(count=f" ({answers.n_examples:,})" if answers.n_examples is not None else "")
        (assumed if value is None else phrases).append(phrase)
        taken.append((node, branch))
        node = _BY_ID[branch.target]
    path.append(node.id)
    for question, branch in taken:
        if getattr(answers, question.field) is None:
            others = set().union(*(_methods_below(b.target) for b in question.branches if b is not branch))
            if others - {node.method}:
                missing.append(question.field)

    rewards = _rewards(node, answers)
    return Recommendation(
        method=node.method,
        title=node.title,
        paragraph=_paragraph(node, phrases, assumed, missing, rewards),
        path=path,
        alternatives=_alternatives(node),
        suggested_rewards=rewards,
        missing=missing,
        spec_overrides=_spec_overrides(node.method, answers, rewards),
        evidence=EVIDENCE.get(node.id),
    )


def _uses_rewards(method: str) -> bool:
    m = methods.find(method)
    return bool(m and m.uses_rewards)


def _learns_from_marks(method: str) -> bool:
    m = methods.find(method)
    return bool(m and m.learns_from_marks)


def _alternatives(leaf: Node) -> list[tuple[str, str]]:
    """The leaf's alternatives, plus every other method that learns from the same kind of signal (human or AI
    marks) as the recommended one: a method registered later (KTO beside DPO) is offered without a new node."""
    out = list(leaf.alternatives)
    if _learns_from_marks(leaf.method or ""):
        known = {key for key, _why in out} | {leaf.method}
        out += [(m.key, m.alternative) for m in methods.all()
                if m.learns_from_marks and m.key not in known and m.alternative]
    return out


def _paragraph(leaf: Node, phrases: list[str], assumed: list[str], missing: list[str], rewards: list[str]) -> str:
    parts = []
    if phrases:
        because = _join(phrases)
        parts.append(f"{because[0].upper()}{because[1:]}, so {METHOD_NAMES[leaf.method]} fits: {leaf.rationale}")
    else:
        parts.append(f"{METHOD_NAMES[leaf.method]} is the most likely fit: {leaf.rationale}")
    if leaf.id in EVIDENCE:
        parts.append(EVIDENCE[leaf.id])
    if assumed:
        parts.append(f"Assumed because not answered: {_join(assumed)}.")
    if missing:
        questions = _join([f"“{QUESTIONS[m]}”" for m in missing])
        parts.append(f"Answering {questions} could change the recommendation.")
    if rewards and _uses_rewards(leaf.method):
        parts.append(f"Suggested reward: {', '.join(rewards)}.")
    elif _uses_rewards(leaf.method):
        parts.append("Pick or write a reward function that checks a completion before training.")
    return " ".join(parts)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _rewards(leaf: Node, answers: Answers) -> list[str]:
    """Rewards that check the answers: trained on by RL methods, used for held-out evaluation by SFT/DFT."""
    if leaf.id == "grpo_judge":
        return [JUDGE_REWARD["name"]]
    if _learns_from_marks(leaf.method) or answers.verifiable is False:
        return []
    rewards = list(answers.rewards or [])
    if not rewards and answers.has_labels is not False and _uses_rewards(leaf.method):
        return ["exact_answer"]  # labels exist but their kind is unknown: compare with the label
    return rewards


def _spec_overrides(method: str, answers: Answers, rewards: list[str]) -> dict[str, Any]:
    """RunSpec fields (nested like RunSpec.to_dict) for `method` with a small model on a CPU."""
    long = answers.reasoning_helps is True
    completion = LONG_COMPLETION_TOKENS if long else SHORT_COMPLETION_TOKENS
    max_length = MAX_LENGTH_LONG if long else MAX_LENGTH_SHORT
    spec: dict[str, Any] = {"method": method}
    if _learns_from_marks(method):  # preference rows are pairs (two sequences each): a smaller step
        spec["training"] = {
            "learning_rate": DPO_LEARNING_RATE, "max_steps": MAX_STEPS, "per_device_train_batch_size": DPO_BATCH_SIZE
        }
        spec["generation"] = {"max_length": max_length}
        return spec
    # one primary reward to start; the judge with its rubric and backend spelled out, to edit
    spec["rewards"] = [dict(JUDGE_REWARD) if name == JUDGE_REWARD["name"] else {"name": name, "weight": 1.0}
                       for name in rewards[:1]]
    spec["training"] = {
        "learning_rate": LORA_LEARNING_RATE, "max_steps": MAX_STEPS, "per_device_train_batch_size": BATCH_SIZE
    }
    if _uses_rewards(method):
        spec["generation"] = {
            "num_generations": NUM_GENERATIONS, "max_completion_length": completion, "temperature": 1.0
        }
        spec["grpo"] = {"loss_type": "dapo", "beta": 0.0}
    else:  # sft / dft: completion length only matters for evaluation
        spec["generation"] = {"max_length": max_length, "max_completion_length": completion}
    return spec


def answers_from_profile(profile: DatasetProfile) -> tuple[Answers, dict[str, str]]:
    """Pre-answers from a dataset profile, with the sentence behind each (fields left None are not given)."""
    reasons: dict[str, str] = {}
    preference = profile.format == "preference"
    reasons["has_preferences"] = (
        "The rows hold prompt / chosen / rejected preference pairs." if preference
        else "There are no chosen / rejected columns, so the data holds no preference pairs."
    )
    if profile.format == "text":
        has_labels, n = True, profile.n_rows
        reasons["has_labels"] = "Each row's text is itself the training target (plain language-model data)."
        verifiable = False
        reasons["verifiable"] = "Plain text has no separate answer that a program could check."
    else:
        has_labels = profile.n_labelled > 0
        n = profile.n_labelled if has_labels else profile.n_rows
        reasons["has_labels"] = (
            f"{profile.n_labelled:,} of {profile.n_rows:,} rows ({profile.labelled_share:.0%}) have a non-empty "
            f"'{profile.answer_column}'." if has_labels else "No column holds answers or target completions."
        )
        verifiable = profile.verifiable
        reasons["verifiable"] = " ".join(profile.reasons)
    reasons["n_examples"] = f"The dataset has {n:,} {'labelled ' if has_labels else ''}rows."
    reasons["reasoning_helps"] = profile.reasoning_reason
    reasons["has_demonstrations"] = profile.demonstration_reason
    reasons["model_can_judge"] = ("The data cannot tell whether a model could grade its replies: answer it yourself "
                                  "when no program can check them.")
    answers = Answers(
        has_labels=has_labels,
        verifiable=verifiable,
        n_examples=n,
        reasoning_helps=profile.reasoning_helps,
        has_demonstrations=profile.demonstration_column is not None,
        has_preferences=preference,
        rewards=list(profile.suggested_rewards),
    )
    return answers, reasons


# -- drawing --------------------------------------------------------------------------------------------------
