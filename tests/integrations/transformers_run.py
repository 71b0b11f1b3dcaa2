"""Hugging Face Trainer runs with ReproCallback, as fresh processes for test_transformers.py.

``python -m tests.integrations.transformers_run first DIR``: the uninterrupted
run (``DIR/full.pt``), then the same run crashing at step 13, after
``checkpoint-12`` (inside the second epoch) and ``checkpoint-8`` (the end of
the first). Every ``train()`` leaves the process's RNG and flags as they were
when it was called.

``python -m tests.integrations.transformers_run resume DIR``: each of those
checkpoints resumed to the end (``DIR/resumed-12.pt``, ``DIR/resumed-8.pt``),
then ``checkpoint-12`` once more without the callback's files
(``DIR/bare.pt``): the control.

The model is a tiny BERT built from a config (nothing is downloaded) whose
loss is scaled by noise from a registered generator, which the Trainer's own
RNG file does not hold; dropout, shuffling and two DataLoader workers do the rest.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from repro_ctx import capture, deterministic, register
from repro_ctx.integrations.transformers import ReproCallback

NOISE = torch.Generator().manual_seed(5)
register(NOISE)


class NoisyBert(BertForSequenceClassification):
    def forward(self, input_ids: Any = None, labels: Any = None) -> Any:  # type: ignore[override]
        out = super().forward(input_ids=input_ids, labels=labels)
        out.loss = out.loss * (1 + 0.5 * torch.rand((), generator=NOISE))
        return out


def dataset() -> list[dict[str, torch.Tensor]]:
    data = torch.Generator().manual_seed(1234)
    ids = torch.randint(1, 32, (32, 8), generator=data)
    return [{"input_ids": row, "labels": (row.sum() % 2).long()} for row in ids]


class Crash(TrainerCallback):
    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 12:
            raise RuntimeError("the machine went away")


def train(folder: Path, *, crash: bool = False, resume: Path | None = None) -> torch.Tensor:
    config = BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=16, num_labels=2, hidden_dropout_prob=0.3)
    with deterministic(seed=1):
        model = NoisyBert(config)
    args = TrainingArguments(
        output_dir=str(folder), per_device_train_batch_size=4, num_train_epochs=3,
        learning_rate=1e-2, save_strategy="steps", save_steps=4, logging_strategy="no",
        report_to="none", use_cpu=True, dataloader_num_workers=2, disable_tqdm=True)
    repro = ReproCallback(seed=0)
    callbacks: list[TrainerCallback] = [repro, *([Crash()] if crash else [])]
    trainer = Trainer(model=model, args=args, train_dataset=dataset(), callbacks=callbacks)
    before = capture()  # Trainer() has called set_seed(args.seed) itself, outside any scope
    try:
        with repro:
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        assert capture().diff(before) == [], capture().diff(before)
        assert not torch.are_deterministic_algorithms_enabled()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def first(folder: Path) -> None:
    torch.save(train(folder / "full"), folder / "full.pt")
    try:
        train(folder / "crash", crash=True)
    except RuntimeError as exc:
        if "went away" not in str(exc):
            raise
    else:
        raise AssertionError("the crashing run did not crash")
    print("first: ok")


def resume(folder: Path) -> None:
    for step in (12, 8):
        checkpoint = folder / "crash" / f"checkpoint-{step}"
        shutil.copytree(checkpoint, folder / f"resumed-{step}" / checkpoint.name)
        weights = train(folder / f"resumed-{step}", resume=checkpoint)
        torch.save(weights, folder / f"resumed-{step}.pt")
    bare = folder / "bare" / "checkpoint-12"
    shutil.copytree(folder / "crash" / "checkpoint-12", bare)
    shutil.rmtree(bare / "repro_ctx")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.save(train(folder / "bare", resume=bare), folder / "bare.pt")
    assert any("without repro_ctx state" in str(w.message) for w in caught)
    print("resume: ok")


if __name__ == "__main__":
    mode, where = sys.argv[1], Path(sys.argv[2])
    {"first": first, "resume": resume}[mode](where)
