"""ReproCallback for Lightning: exact resume in a new process, a scoped fit, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")

import lightning as L
from torch.utils.data import DataLoader, TensorDataset

from repro_ctx import capture, register, unregister
from repro_ctx.integrations.lightning import ReproCallback
from tests.waits import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]


def _run(mode: str, folder: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    completed = subprocess.run(
        [sys.executable, "-m", "tests.integrations.lightning_run", mode, str(folder)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_TIMEOUT)
    assert completed.returncode == 0, f"{completed.stdout}\n{completed.stderr}"
    assert f"{mode}: ok" in completed.stdout


def test_a_fit_resumed_in_a_new_process_ends_with_the_uninterrupted_weights(
        tmp_path: Path) -> None:
    """Four epochs with dropout, shuffling and augmentation in two workers, against the
    same fit crashed after epoch 2 and resumed from its checkpoint in another process."""
    _run("first", tmp_path)
    _run("resume", tmp_path)
    full = torch.load(tmp_path / "full.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)
    bare = torch.load(tmp_path / "bare.pt", weights_only=True)
    assert torch.equal(full, resumed)
    assert not torch.equal(full, bare)  # the same resume without the callback's state


# -- in this process: the scope, the checkpoint entry, errors --------------------------


class _Net(L.LightningModule):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.fail = fail

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.fail:
            raise ValueError("bad batch")
        return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        assert torch.are_deterministic_algorithms_enabled()
        self.log("seen", 1.0)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(**kwargs: object) -> DataLoader[tuple[torch.Tensor, ...]]:
    data = TensorDataset(torch.randn(8, 4), torch.randn(8, 1))
    return DataLoader(data, batch_size=4, **kwargs)  # type: ignore[arg-type]


def _trainer(callback: ReproCallback, **kwargs: object) -> L.Trainer:
    options: dict[str, object] = {"max_epochs": 1, **kwargs}
    return L.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[callback],
                     enable_progress_bar=False, enable_model_summary=False,
                     **options)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", module="lightning")


def test_a_fit_that_raises_leaves_every_rng_flag_and_variable_as_it_was(
        tmp_path: Path) -> None:
    os.environ["PL_GLOBAL_SEED"] = "7"
    try:
        callback = ReproCallback(seed=3)
        failing, model, loader = _Net(fail=True), _Net(), _loader()
        before = capture()
        with pytest.raises(ValueError, match="bad batch"):
            _trainer(callback, default_root_dir=tmp_path).fit(failing, loader)
        assert capture().diff(before) == []
        assert os.environ["PL_GLOBAL_SEED"] == "7"
        assert "PL_SEED_WORKERS" not in os.environ
        # and the callback is ready for the next run
        _trainer(callback, default_root_dir=tmp_path, enable_checkpointing=False).fit(
            model, loader)
        assert capture().diff(before) == []
    finally:
        del os.environ["PL_GLOBAL_SEED"]


def test_validate_and_test_run_in_the_scope_too(tmp_path: Path) -> None:
    model, loader = _Net(), _loader()
    before = capture()
    trainer = _trainer(ReproCallback(seed=None), default_root_dir=tmp_path)
    trainer.validate(model, loader)
    assert capture().diff(before) == []
    assert not torch.are_deterministic_algorithms_enabled()


def test_the_checkpoint_holds_one_entry_for_every_rank(tmp_path: Path) -> None:
    trainer = _trainer(ReproCallback(seed=0), default_root_dir=tmp_path)
    trainer.fit(_Net(), _loader())
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    entry = torch.load(path, weights_only=True)["callbacks"]["ReproCallback"]
    assert entry["version"] == 1
    states = entry["rank_states"]
    assert states["world_size"] == 1
    assert [e["rank"] for e in states["ranks"]] == [0]


def _checkpoint_of(tmp_path: Path, edit: object) -> Path:
    trainer = _trainer(ReproCallback(seed=0), default_root_dir=tmp_path,
                       enable_checkpointing=False)
    trainer.fit(_Net(), _loader())
    path = tmp_path / "edited.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    edit(checkpoint["callbacks"]["ReproCallback"])  # type: ignore[operator]
    torch.save(checkpoint, path)
    return path


def test_resuming_with_another_world_size_names_both_sizes(tmp_path: Path) -> None:
    def two_ranks(entry: dict[str, object]) -> None:
        states = entry["rank_states"]
        states["world_size"] = 2  # type: ignore[index]
        states["ranks"] = states["ranks"] * 2  # type: ignore[index]

    path = _checkpoint_of(tmp_path, two_ranks)
    model, loader = _Net(), _loader()
    before = capture()
    trainer = _trainer(ReproCallback(seed=0), default_root_dir=tmp_path, max_epochs=2)
    with pytest.raises(ValueError, match="world size 2; this run has world size 1"):
        trainer.fit(model, loader, ckpt_path=path)
    assert capture().diff(before) == []


def test_a_malformed_entry_is_refused(tmp_path: Path) -> None:
    path = _checkpoint_of(tmp_path, lambda entry: entry.update(version=99))
    trainer = _trainer(ReproCallback(seed=0), default_root_dir=tmp_path, max_epochs=2)
    with pytest.raises(ValueError, match="unsupported ReproCallback checkpoint state"):
        trainer.fit(_Net(), _loader(), ckpt_path=path)
    path = _checkpoint_of(tmp_path, lambda entry: entry.update(rank_states={"format": "x"}))
    with pytest.raises(ValueError, match="not a repro_ctx rank-states entry"):
        _trainer(ReproCallback(seed=0), default_root_dir=tmp_path, max_epochs=2).fit(
            _Net(), _loader(), ckpt_path=path)


def test_a_mismatch_raises_unless_strict_is_off(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    register(generator)
    try:
        path = _checkpoint_of(tmp_path, lambda entry: None)
    finally:
        unregister(generator)
    with pytest.raises(ValueError, match="does not match this process"):
        _trainer(ReproCallback(seed=0), default_root_dir=tmp_path, max_epochs=2).fit(
            _Net(), _loader(), ckpt_path=path)
    with pytest.warns(RuntimeWarning, match="restored the checkpoint's RNG state except"):
        _trainer(ReproCallback(seed=0, strict=False), default_root_dir=tmp_path,
                 max_epochs=2).fit(_Net(), _loader(), ckpt_path=path)


def test_testing_on_a_checkpoint_keeps_the_scope_s_seed(tmp_path: Path) -> None:
    path = _checkpoint_of(tmp_path, lambda entry: entry.update(version=99))
    model, loader = _Net(), _loader()
    before = capture()
    _trainer(ReproCallback(seed=0), default_root_dir=tmp_path).validate(
        model, loader, ckpt_path=path)  # the malformed entry is never read
    assert capture().diff(before) == []


def test_what_a_checkpoint_cannot_restore_is_said_once(tmp_path: Path) -> None:
    own = torch.Generator().manual_seed(0)
    loader = _loader(shuffle=True, generator=own, num_workers=1, persistent_workers=True)
    trainer = _trainer(ReproCallback(seed=0), default_root_dir=tmp_path, max_epochs=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(_Net(), loader)
    messages = [str(w.message) for w in caught if "ReproCallback" in str(w.message)]
    assert sum("persistent_workers=True" in m for m in messages) == 1
    assert sum("not register()ed" in m for m in messages) == 1
    register(own)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _trainer(ReproCallback(seed=0), default_root_dir=tmp_path).fit(
                _Net(), _loader(shuffle=True, generator=own))
    finally:
        unregister(own)
    assert not [w for w in caught if "ReproCallback" in str(w.message)]


@pytest.mark.parametrize(
    ("options", "error"),
    [({"seed": "0"}, (TypeError, ValueError)), ({"algorithms": "always"}, ValueError),
     ({"strict": 1}, TypeError), ({"per_rank": None}, TypeError)],
)
def test_bad_options_are_refused_at_construction(
        options: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        ReproCallback(**options)  # type: ignore[arg-type]


def test_repr_names_the_options() -> None:
    assert repr(ReproCallback(seed=5, tf32=None)) == (
        "ReproCallback(seed=5, algorithms=True, benchmark=False, tf32=None, "
        "fill_uninitialized_memory=None, per_rank=False, strict=True)")


def test_import_repro_ctx_imports_no_framework() -> None:
    code = ("import sys, repro_ctx, repro_ctx.integrations.rank_states; "
            "print(sorted(m for m in ('lightning', 'transformers', 'accelerate') "
            "if m in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                               text=True, timeout=HANG_TIMEOUT)
    assert completed.stdout.strip() == "[]", completed.stderr


def test_the_checks_find_loaders_in_collections_and_their_samplers_generators() -> None:
    from repro_ctx.integrations.lightning import _generators, _loaders

    own = torch.Generator()
    first, second = _loader(), _loader(shuffle=True, generator=own)
    assert list(_loaders({"a": [first, (second,)], "b": None})) == [first, second]
    assert _generators(first) == []
    assert _generators(second) == [own]  # the loader's and its sampler's: one generator
