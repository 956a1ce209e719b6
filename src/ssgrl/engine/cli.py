"""``ssgrl fit | validate | test``: LightningCLI over SSGRLModule + SSGRLDataModule.

Each run writes into its own directory (``--run_dir``, default ``runs/<time>-<command>``):
``config.yaml`` (the resolved config), TensorBoard event files, ``checkpoints/best.ckpt``
(by validation mAP, never test) and ``checkpoints/last.ckpt``, and ``metrics.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher

from ssgrl.data.datamodule import SSGRLDataModule
from ssgrl.engine.module import SSGRLModule, write_json


def new_run_dir(base: str | Path, command: str) -> Path:
    """A fresh directory: an earlier run is never written into or overwritten."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = Path(base) / f"{stamp}-{command}"
    n = 1
    while candidate.exists():
        n += 1
        candidate = Path(base) / f"{stamp}-{command}-{n}"
    return candidate


class SSGRLCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help="run directory (default runs/<time>-<command>)",
        )
        parser.add_argument(
            "--runs_root", type=str, default="runs", help="where new run directories go"
        )
        parser.link_arguments("model.backbone", "data.backbone")
        parser.set_defaults({"trainer.num_sanity_val_steps": 0, "trainer.max_epochs": 10})

    def before_instantiate_classes(self) -> None:
        # run=False (no subcommand) parses a flat config: used to instantiate without running
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        command = self.subcommand or "run"
        run_dir = Path(cfg.run_dir) if cfg.run_dir else new_run_dir(cfg.runs_root, command)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise SystemExit(
                f"run directory {run_dir} exists and is not empty; choose a new --run_dir"
            )
        cfg.run_dir = str(run_dir)
        self.run_dir = run_dir

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = TensorBoardLogger(
                save_dir=str(self.run_dir.parent), name="", version=self.run_dir.name
            )
        callbacks = list(trainer_cfg.get("callbacks") or [])
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            has_val = self.datamodule.split_names["val"] is not None
            callbacks.append(
                ModelCheckpoint(
                    dirpath=str(self.run_dir / "checkpoints"),
                    filename="best",
                    monitor="val/mAP" if has_val else None,
                    mode="max",
                    save_last=True,
                    save_top_k=1,
                    enable_version_counter=False,
                )
            )
            callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        kwargs["callbacks"] = callbacks
        kwargs.setdefault("default_root_dir", str(self.run_dir))
        trainer = super().instantiate_trainer(**kwargs)
        if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher):
            # the loops would run in spawned/forked workers, and their results (metrics.json,
            # logits) would never reach this process
            raise SystemExit(
                "trainer.strategy ddp_spawn/ddp_fork/ddp_notebook runs the loops in spawned or "
                "forked processes, whose results cannot reach metrics.json: use "
                "--trainer.strategy ddp (each process launched as a script) instead"
            )
        return trainer

    # -- after each command: metrics.json ------------------------------------------------------
    def _protocol(self, role: str, selected_on: str | None) -> dict[str, Any]:
        dm: SSGRLDataModule = self.datamodule
        hp = self.model.hparams
        pre = dm.preprocessing
        return {
            **dm.describe(role),
            "dataset_options": dm.dataset_options,
            "difficult_policy": dm.dataset_options.get(
                "difficult", "ignore" if dm.dataset.startswith("voc") else None
            ),
            "ap_mode": hp.ap_mode,
            "threshold": hp.threshold,
            "top_k": hp.top_k,
            "input_size": pre["image_size"],
            "crop_policy": (
                f"resize {pre['resize']}x{pre['resize']}, centre crop {pre['image_size']}"
                if pre["resize"] != pre["image_size"]
                else f"resize {pre['image_size']}x{pre['image_size']}"
            ),
            "backbone": hp.backbone,
            "pretrained": self.model.meta.get("pretrained", hp.pretrained),
            "checkpoint_selected_on": selected_on,
        }

    def _write_metrics(self, stage: str, extra: dict[str, Any]) -> None:
        result = self.model.results.get(stage)
        if result is None or self.trainer.global_rank != 0:
            return
        role = "val" if stage == "val" else "test"
        ckpt = self.config[self.subcommand].get("ckpt_path")
        selected_on = None
        if ckpt is not None:
            # best.ckpt is chosen by val mAP (ModelCheckpoint); any other file is not selected
            if self.model.meta.get("selected_on"):
                selected_on = str(self.model.meta["selected_on"])
            elif Path(str(ckpt)).stem.startswith("best"):
                selected_on = f"val mAP on split {self.model.meta.get('val_split')!r}"
            else:
                selected_on = f"not selected: {Path(str(ckpt)).name} as given"
        out = {
            "stage": stage,
            "metrics": result["metrics"],
            "protocol": self._protocol(role, selected_on),
            **extra,
        }
        split = self.datamodule.load(role)
        np.save(self.run_dir / f"{stage}_logits.npy", result["logits"])
        if result["metrics"] is None:
            out["note"] = "labels of this split are not public: no metrics; see the written scores"
            out["predictions"] = str(self._write_unlabelled(split, result))
        else:
            np.save(self.run_dir / f"{stage}_targets.npy", result["target"].astype(np.int8))
        path = write_json(self.run_dir / "metrics.json", out)
        print(f"metrics written to {path}")

    def _write_unlabelled(self, split: Any, result: dict[str, Any]) -> Path:
        logits = result["logits"].astype(np.float64)
        ids = [split.ids[int(i)] for i in result["index"]]
        if self.datamodule.dataset in ("voc2007", "voc2012"):
            from ssgrl.data.voc import write_voc_submission

            # logits, not probabilities: those round to tied 1.000000 at 6 decimals
            year = self.datamodule.dataset.removeprefix("voc")
            return write_voc_submission(ids, logits, list(split.classes), self.run_dir, year=year)
        probs = 1.0 / (1.0 + np.exp(-logits))
        path = self.run_dir / "test_scores.csv"
        with path.open("w") as f:
            f.write("image," + ",".join(split.classes) + "\n")
            for image_id, row in zip(ids, probs, strict=True):
                f.write(image_id + "," + ",".join(f"{v:.6f}" for v in row) + "\n")
        return path

    def after_fit(self) -> None:
        cb = self.trainer.checkpoint_callback
        extra: dict[str, Any] = {"run_dir": str(self.run_dir)}
        if isinstance(cb, ModelCheckpoint):
            extra["best_checkpoint"] = cb.best_model_path or None
            extra["best_val_mAP"] = (
                None if cb.best_model_score is None else float(cb.best_model_score)
            )
            extra["last_checkpoint"] = cb.last_model_path or None
        if "val" in self.model.results:
            extra["metrics_of"] = (
                f"the last validation epoch ({self.trainer.current_epoch - 1}); best.ckpt is the "
                "epoch of best_val_mAP: `ssgrl validate --ckpt_path` it for its full metrics"
            )
            self._write_metrics("val", extra)
        elif self.trainer.global_rank == 0:
            write_json(self.run_dir / "metrics.json", extra)

    def after_validate(self) -> None:
        self._write_metrics("val", {"run_dir": str(self.run_dir)})

    def after_test(self) -> None:
        self._write_metrics("test", {"run_dir": str(self.run_dir)})


def lightning_main(argv: list[str]) -> int:
    import sys
    import warnings

    warnings.filterwarnings("ignore", message=".*modules? in eval mode.*")  # frozen BatchNorm
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    SSGRLCLI(
        SSGRLModule,
        SSGRLDataModule,
        args=None if argv == sys.argv[1:] else argv,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
    return 0
