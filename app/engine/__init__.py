"""The workbench engine: everything except the UI, with no Gradio import.

spec        RunSpec, the one typed specification of a run (YAML round-trip, validation)
models      the embedded default model (GGUF → cached HF folder), hub ids, local folders
data/tasks  datasets (built-in tasks, files, hub) in TRL's forms, held-out splits
backend     Unsloth where it runs, else TRL + PEFT; model loading
worker      train(spec): one run in this process, writing its run folder (python -m app.train)
callbacks   TrainerCallbacks writing metrics/samples, stop requests, checkpoint markers, progress bar
runs        the run store: folders, atomic status, JSONL readers, launch/stop/resume
evaluate    greedy held-out evaluation and generation, scored with the rewards
method_compare  SFT, DFT, GRPO, SFT→GRPO and Prefix-RFT on one task and budget: runs, table, charts
"""
