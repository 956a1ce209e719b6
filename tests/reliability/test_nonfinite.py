"""A NaN or infinite loss through ``ssgrl fit``: the step is skipped (no update), up to
``model.optim.max_nonfinite_steps`` in a row, with a warning naming the step and the batch's
samples; one more in a row stops training with the step and the sample ids; a checkpoint with
non-finite weights is never written.

The fault is injected through the data, as a corrupt input would bring it: ``Poison`` (a test
callback given with ``--trainer.callbacks``) sets the batch's cached features to NaN or inf
before chosen steps. The module under test is the real ``SSGRLModule``. (Two processes, with the
loss non-finite on one of them only, are in ``tests/integration/test_distributed_fit.py``.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import tiny_lite0_config
from lightning.pytorch.callbacks import Callback

from ssgrl.data.registry import load_split
from ssgrl.engine.cli import run_cli
from ssgrl.engine.module import NonFiniteLossError, NonFiniteLossWarning, NonFiniteWeightsError

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::ssgrl.metrics.UndefinedClassWarning"),
]

SYNTHETIC = {"num_train": 16, "num_val": 8, "num_test": 4, "image_size": 64}
STEPS_PER_EPOCH = 4  # 16 images, batch 4

CONFIG = tiny_lite0_config(
    SYNTHETIC,
    epochs=2,
    optim={"lr": 0.01, "max_nonfinite_steps": 2},
    data={"batch_size": 4},
    cache_features=True,
)


class Poison(Callback):
    """Test-only: before each global step in ``steps`` the batch's features become ``value``;
    after the step in ``weights_at`` (if any) one weight of the head becomes NaN. Records each
    step (indices, whether any weight changed) in ``out`` as JSON."""

    def __init__(
        self, out: str, steps: list[int], value: str = "nan", weights_at: int = -1
    ) -> None:
        self.out = Path(out)
        self.steps = set(steps)
        self.value = float(value)
        self.weights_at = weights_at
        self.records: list[dict[str, Any]] = []
        self._before: dict[str, torch.Tensor] = {}

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step in self.steps:
            batch["features"] = torch.full_like(batch["features"], self.value)
        self._before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}
        self.records.append({"step": trainer.global_step, "index": batch["index"].tolist()})
        self._write()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.records[-1]["skipped"] = bool(outputs["skipped"])
        self.records[-1]["changed"] = sum(
            not torch.equal(p, self._before[n]) for n, p in pl_module.named_parameters()
        )
        if self.records[-1]["step"] == self.weights_at:
            with torch.no_grad():
                next(p for p in pl_module.parameters() if p.requires_grad).view(-1)[0] = float(
                    "nan"
                )
        self._write()

    def _write(self) -> None:
        self.out.write_text(json.dumps(self.records))


def fit(tmp_path: Path, *args: str, **poison: Any) -> tuple[Path, Path]:
    """``ssgrl fit`` in this process with a ``Poison`` callback; the run directory and the
    callback's record."""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    run, record = tmp_path / "run", tmp_path / "steps.json"
    callback = {"class_path": f"{Poison.__module__}.Poison", "init_args": {"out": str(record)}}
    callback["init_args"].update(poison)  # type: ignore[attr-defined]
    argv = ["fit", "--config", str(config), "--run_dir", str(run), *args]
    run_cli([*argv, "--trainer.callbacks", json.dumps([callback])])
    return run, record


def checkpoints_are_finite(run: Path) -> list[str]:
    """The checkpoints written, each checked to hold finite weights only."""
    found = sorted((run / "checkpoints").glob("*.ckpt")) if (run / "checkpoints").is_dir() else []
    for path in found:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        for name, t in state.items():
            if t.is_floating_point():
                assert torch.isfinite(t).all(), f"{path.name}: {name} is not finite"
    return [p.name for p in found]


def ids(indices: list[int]) -> list[str]:
    split = load_split("synthetic", "train", None, **SYNTHETIC)
    return [split.ids[i] for i in sorted(indices)]


def test_up_to_k_nonfinite_steps_in_a_row_are_skipped(tmp_path: Path) -> None:
    """k = 2: steps 1 and 2 (two in a row) and 5 are skipped, the weights unchanged across each;
    training goes on and finishes; every other step updates the weights."""
    with pytest.warns(NonFiniteLossWarning) as caught:
        run, record = fit(tmp_path, steps=[1, 2, 5])
    steps = json.loads(record.read_text())
    assert len(steps) == 2 * STEPS_PER_EPOCH  # the global step counts skipped steps too
    for s in steps:
        if s["step"] in (1, 2, 5):
            assert s["skipped"] and s["changed"] == 0, s
        else:
            assert not s["skipped"] and s["changed"] > 0, s
    messages = [str(w.message) for w in caught if w.category is NonFiniteLossWarning]
    assert len(messages) == 3
    for message, step, in_a_row in zip(messages, (1, 2, 5), (1, 2, 1), strict=True):
        assert (
            f"step {step} (epoch {step // 4}, batch {step % 4}): the loss is not finite" in message
        )
        assert f"({in_a_row} in a row, at most 2" in message
        assert ", ".join(ids(steps[step]["index"])) in message
    assert checkpoints_are_finite(run) == ["best.ckpt", "last.ckpt"]
    assert json.loads((run / "metrics.json").read_text())["metrics"]["num_images"] == 8


def test_one_more_in_a_row_stops_with_the_step_and_the_sample_ids(tmp_path: Path) -> None:
    """k = 2: an infinite loss at steps 1, 2 and 3 stops training at step 3, naming the samples
    of that batch; no checkpoint holds non-finite weights."""
    with (
        pytest.warns(NonFiniteLossWarning),
        pytest.raises(NonFiniteLossError) as err,
    ):
        fit(tmp_path, steps=[1, 2, 3], value="inf")
    message = str(err.value)
    steps = json.loads((tmp_path / "steps.json").read_text())
    assert [s["step"] for s in steps] == [0, 1, 2, 3]  # nothing after the stop
    assert "training stopped at step 3 (epoch 0, batch 3)" in message
    assert "3 steps in a row, more than model.optim.max_nonfinite_steps = 2" in message
    expected = ids(steps[3]["index"])
    assert f"the batch's samples: {', '.join(expected)}" in message
    assert f"not finite for {', '.join(expected)}" in message
    assert checkpoints_are_finite(tmp_path / "run") == []


def test_a_checkpoint_with_nonfinite_weights_is_never_written(tmp_path: Path) -> None:
    """A weight becomes NaN after the last step (a divergence the loss check cannot see: no step
    follows): the checkpoint written at the end of training is refused with what is wrong."""
    last_step = 2 * STEPS_PER_EPOCH - 1
    with pytest.raises(NonFiniteWeightsError) as err:
        fit(tmp_path, "--data.val_split", "null", steps=[], weights_at=last_step)
    message = str(err.value)
    assert f"refusing to write a checkpoint (global step {last_step + 1}, epoch" in message
    assert ": 1 NaN/inf" in message and "the weights are not finite" in message
    assert checkpoints_are_finite(tmp_path / "run") == []


def test_max_nonfinite_steps_must_not_be_negative() -> None:
    from ssgrl.engine.module import OptimConfig, SSGRLModule

    with pytest.raises(ValueError, match="max_nonfinite_steps must be >= 0"):
        SSGRLModule(optim=OptimConfig(max_nonfinite_steps=-1))
