"""SFT and DFT: offline learning from prompt → completion pairs with TRL's SFTTrainer.

DFT (Dynamic Fine-Tuning) is SFT with each token's loss scaled by the model's own detached probability of that
token; TRL implements it as `SFTConfig(loss_type="dft")`, so the two differ in one setting."""
from __future__ import annotations

from typing import Any, ClassVar

from app.engine.data import forms
from app.engine.methods.base import MethodCharts, TrainerParts, TrainingMethod

SFT_CHARTS = MethodCharts(
    main="loss", main_title="Training loss", main_y_title="loss",
    dynamics=(
        ("loss", "Loss", ""),
        ("mean_token_accuracy", "Token accuracy", ".0%"),
        ("entropy", "Entropy", ""),
        ("grad_norm", "Gradient norm", ""),
        ("learning_rate", "Learning rate", ".1e"),
        ("step_time", "Step time (s)", ""),
    ),
)


class SFT(TrainingMethod):
    key = "sft"
    label = "SFT"
    order = 10
    summary = "Supervised fine-tuning on labelled prompt → completion pairs (offline)."
    data_form = forms.COMPLETION
    recipe = "arithmetic-sft.yaml"
    charts = SFT_CHARTS
    loss_type: ClassVar[str] = "nll"

    def defaults(self, gpu: bool) -> dict[str, Any]:
        return {
            "method": self.key,
            "training": {"learning_rate": 2e-4, "max_steps": 100 if gpu else 40,
                         "per_device_train_batch_size": 16 if gpu else 8},
            "generation": {"max_length": 512 if gpu else 256, "max_completion_length": 64 if gpu else 32},
            "logging": {"eval_every": 0, "save_steps": 50 if gpu else 20},
        }

    def build_trainer(self, parts: TrainerParts) -> Any:
        from trl import SFTConfig, SFTTrainer

        cfg = SFTConfig(**parts.common, max_length=parts.spec.generation.max_length, loss_type=self.loss_type,
                        packing=False)
        return SFTTrainer(model=parts.model, processing_class=parts.tokenizer, args=cfg,
                          train_dataset=parts.train_dataset, peft_config=parts.peft_config)


class DFT(SFT):
    key = "dft"
    label = "DFT"
    order = 20
    summary = ("Dynamic Fine-Tuning: SFT with each token's loss scaled by the model's own detached probability "
               "of it (generalises better).")
    recipe = "arithmetic-dft.yaml"
    loss_type = "dft"


METHODS = (SFT(), DFT())
