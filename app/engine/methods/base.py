"""The training-method protocol: what one method owns, as small overridable hooks (the way TRL pairs each trainer
with its config dataclass, and LLaMA-Factory gives each stage its own workflow).

A method is a `TrainingMethod` subclass in its own module of this package, listed in that module's `METHODS`
tuple; `app.engine.methods` finds the modules and builds the registry. Everything specific to a method lives in
its module: its RunSpec section (a dataclass; RunSpec gains it as a field named `section`), the checks of that
section, the row form its TRL trainer reads, the trainer itself, any evaluation beyond the shared greedy one,
its defaults per hardware and the charts it draws. The worker, validation, the decision tree, the Train tab and
the charts ask the registry; none of them names a method.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

from app.engine.core.fields import SpecError
from app.engine.data import forms

if TYPE_CHECKING:  # type hints only: the RunSpec module imports this package for the method sections
    from app.engine.core.spec import RunSpec

Panel = tuple[str, str, str]  # (metric key, title, y-axis number format) of one chart panel

GENERIC_DYNAMICS: tuple[Panel, ...] = (
    ("loss", "Loss", ""),
    ("grad_norm", "Gradient norm", ""),
    ("entropy", "Entropy", ""),
    ("mean_token_accuracy", "Token accuracy", ".0%"),
    ("learning_rate", "Learning rate", ".1e"),
    ("step_time", "Step time (s)", ""),
)


@dataclass(frozen=True)
class MethodCharts:
    """What the live view draws for a method (app.engine.presentation.charts interprets it).

    main: the headline chart: 'reward' (mean ± std of the rollouts' rewards), 'loss', or 'lines' (the
    `main_lines` metrics on one plot). dynamics: the 2×3 grid of per-step metrics. extra: an optional row of
    panels of the method's own metrics, each with an optional companion line (`companions`)."""

    main: str = "loss"
    main_title: str = "Training loss"
    main_lines: tuple[tuple[str, str], ...] = ()  # (metric, legend name) for main == 'lines'
    main_y_title: str = ""
    dynamics: tuple[Panel, ...] = GENERIC_DYNAMICS
    companions: dict[str, tuple[str, str]] = field(default_factory=dict)  # panel metric → (metric, name)
    extra: tuple[Panel, ...] = ()
    extra_title: str = ""
    extra_companions: dict[str, str] = field(default_factory=dict)
    extra_empty: str = ""  # what the extra row says before its metrics exist

    def metrics(self) -> list[str]:
        """Every metric these charts read (for the registry test and the docs)."""
        keys = [k for k, _n in self.main_lines] + [p[0] for p in self.dynamics] + [p[0] for p in self.extra]
        keys += [m for m, _n in self.companions.values()] + list(self.extra_companions.values())
        return keys


@dataclass(frozen=True)
class FormField:
    """A field of the method's section the Train tab shows (its help text comes from the section's dataclass).
    kind: int, float, text, bool, or choice (a dropdown of `choices`)."""

    path: str
    kind: str
    label: str
    choices: tuple[str, ...] = ()


@dataclass
class TrainerParts:
    """What the worker hands a method to build its trainer: the loaded model, the TRL-form dataset, the rewards
    (RL methods) and the TrainingArguments every method shares (`common`)."""

    spec: "RunSpec"
    backend: Any  # training.backend.BackendInfo
    model: Any
    tokenizer: Any
    peft_config: Any
    train_dataset: Any
    reward_funcs: Sequence[Any]
    reward_weights: Sequence[float]
    common: dict[str, Any]


@dataclass
class EvalContext:
    """What a method's extra held-out evaluation gets (DPO's preference accuracy, KTO's reply scores)."""

    spec: "RunSpec"
    model: Any
    tokenizer: Any
    unsloth: bool
    log: Callable[[str], None]


class TrainingMethod:
    """One training method. Subclasses set the class attributes and override the hooks they need."""

    key: ClassVar[str]                     # the RunSpec `method` value
    label: ClassVar[str]                   # how the UI names it
    order: ClassVar[int] = 100             # position in pickers and tables
    summary: ClassVar[str] = ""            # one sentence for the UI and docs
    data_form: ClassVar[str] = forms.PROMPT  # the rows its trainer reads (app.engine.data.forms)
    uses_rewards: ClassVar[bool] = False   # samples completions and scores them with the run's rewards
    learns_from_marks: ClassVar[bool] = False  # learns from human/AI judgements instead of labels (no-label branch)
    collects: ClassVar[str | None] = None  # the marks 4 · Compare collects for it ('pairs', 'thumbs')
    collect_hint: ClassVar[str] = ""       # how the user collects them, for the Decide tab's hint
    alternative: ClassVar[str] = ""        # when the decision tree should offer it instead of a sibling method
    section: ClassVar[str | None] = None   # name of its RunSpec section
    section_type: ClassVar[type | None] = None  # the section's dataclass
    section_help: ClassVar[str] = ""
    recipe: ClassVar[str]                  # its CPU recipe, a file name in recipes/
    charts: ClassVar[MethodCharts] = MethodCharts()
    form_fields: ClassVar[tuple[FormField, ...]] = ()  # its section's fields in the Train tab
    eval_metrics: ClassVar[tuple[str, ...]] = ()  # what its extra evaluation adds (training.keep_best may use them)

    # -- the RunSpec ------------------------------------------------------------------------------------------------
    def defaults(self, gpu: bool) -> dict[str, Any]:
        """Sensible RunSpec values (a nested dict) on this hardware: small and quick on a CPU, larger on a GPU.
        The CPU values match the method's recipe."""
        return {"method": self.key}

    def problems(self, spec: "RunSpec") -> list[SpecError]:
        """Checks of the method's section and of the shared settings it relies on (no files read)."""
        return []

    def data_problem(self, spec: "RunSpec", train_rows: list[dict[str, Any]]) -> str | None:
        """One sentence when the loaded training rows lack something this method needs beyond its row form."""
        return None

    def recommended(self, changes: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """The RunSpec changes a decision-tree recommendation of this method leads to, given what the profiler
        found in the dataset (`data`: source, format, demonstration_column…)."""
        return changes

    # -- data -------------------------------------------------------------------------------------------------------
    def rows_problem(self, rows: list[dict[str, Any]], where: Callable[[int], str] | None = None) -> str | None:
        """One sentence naming what the rows lack for this method's trainer (every row checked), or None."""
        return forms.column_problem(self.data_form, rows, where, what=self.label)

    def trl_rows(self, rows: list[dict[str, Any]], system_prompt: str | None = None) -> list[dict[str, Any]]:
        """The training rows in the form its TRL trainer reads."""
        return forms.to_form(self.data_form, rows, system_prompt)

    def eval_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Held-out rows as the shared greedy evaluation reads them (prompt + reward columns)."""
        return rows

    # -- training and evaluation ----------------------------------------------------------------------------------
    def build_trainer(self, parts: TrainerParts) -> Any:
        raise NotImplementedError

    def extra_evaluation(self, ctx: EvalContext, rows: list[dict[str, Any]], step: int) -> dict[str, Any]:
        """Held-out metrics beyond the greedy accuracy and reward ({} for most methods)."""
        return {}

    def advantage_scaling(self, spec: Any) -> tuple[str, str] | None:
        """For methods that sample groups: how advantages are scaled ('group' | 'batch' | 'none') and a sentence
        naming it (the reward playground shows it). None for the others."""
        return None

    def __repr__(self) -> str:
        return f"<method {self.key}>"
