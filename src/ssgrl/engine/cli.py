"""``ssgrl fit | validate | test``: LightningCLI over SSGRLModule + SSGRLDataModule.

Each run writes into its own directory (``--run_dir``, default ``runs/<time>-<command>``):
``config.yaml`` (the resolved config), TensorBoard event files, ``checkpoints/best.ckpt``
(by validation mAP, never test) and ``checkpoints/last.ckpt``, and ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from ssgrl.checkpoint import plain_data
from ssgrl.data.datamodule import SSGRLDataModule
from ssgrl.engine.features import FeatureCaching
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
        parser.add_argument(
            "--cache_features",
            type=bool,
            default=False,
            help="compute a frozen backbone's features once (exact; model.net.train_stages 0, "
            "data.train_augment none or flip)",
        )
        parser.add_argument(
            "--feature_cache_dir",
            type=str | None,
            default=None,
            help="keep cached features in this folder between runs (keyed by backbone weights, "
            "preprocessing, precision and each image's content)",
        )
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
        self.run_config: dict[str, Any] = plain_data(cfg.as_dict())
        self.run_config.pop("config", None)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        self.model.run_config = self.run_config
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = TensorBoardLogger(
                save_dir=str(self.run_dir.parent), name="", version=self.run_dir.name
            )
        callbacks = list(trainer_cfg.get("callbacks") or [])
        if cfg.cache_features and not any(isinstance(c, FeatureCaching) for c in callbacks):
            progress = trainer_cfg.get("enable_progress_bar") is not False
            callbacks.append(FeatureCaching(cfg.feature_cache_dir, progress=progress))
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            has_val = self.datamodule.split_names["val"] is not None
            # with a validation split: best.ckpt (by val mAP) and last.ckpt; without: last.ckpt,
            # the final epoch, which is what gets evaluated (never selected on test)
            callbacks.append(
                ModelCheckpoint(
                    dirpath=str(self.run_dir / "checkpoints"),
                    filename="best",
                    monitor="val/mAP" if has_val else None,
                    mode="max",
                    save_last=True,
                    save_top_k=1 if has_val else 0,
                    enable_version_counter=False,
                )
            )
            callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        kwargs["callbacks"] = callbacks
        kwargs.setdefault("default_root_dir", str(self.run_dir))
        trainer = super().instantiate_trainer(**kwargs)
        # spawn/fork/notebook strategies launch with Lightning's multiprocessing launcher (no
        # public name to test against, hence the class name)
        launcher = trainer.strategy.launcher
        if launcher is not None and type(launcher).__name__ == "_MultiProcessingLauncher":
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
        module: SSGRLModule = self.model
        meta = module.meta
        assert meta is not None
        pre = meta.preprocessing
        ev = module.evaluation
        metrics = (module.results.get("test" if role == "test" else "val") or {}).get("metrics")
        caching = next(
            (c for c in self.trainer.callbacks if isinstance(c, FeatureCaching)),  # type: ignore[attr-defined]
            None,
        )
        card: dict[str, Any] = {
            **dm.describe(role),
            "dataset_options": dm.dataset_options,
            "difficult_policy": dm.dataset_options.get(
                "difficult", "ignore" if dm.dataset.startswith("voc") else None
            ),
            "ap_mode": ev.ap_mode,
            "threshold": ev.threshold,
            "top_k": ev.top_k,
            "top_k_effective": None if metrics is None else metrics.get("top_k_effective"),
            "top_k_variants": None if metrics is None else metrics.get("top_k_variants"),
            "input_size": pre.image_size,
            "crop_policy": pre.describe(),
            "backbone": meta.model.backbone,
            "trained_stages": meta.model.train_stages,
            "pretrained": meta.pretrained,
            "graph_split": (meta.graph or {}).get("split"),
            "precision": str(self.trainer.precision),
            "features": "backbone run per batch"
            if caching is None
            else f"cached: computed once under precision {self.trainer.precision}, exactly as a "
            "step computes them",
            "checkpoint_selected_on": selected_on,
            "thresholds": self._threshold_card(),
        }
        if metrics is not None and metrics.get("top_k_effective") != ev.top_k:
            card["top_k_note"] = (
                f"top_k {ev.top_k} clamped to the number of classes ({metrics['top_k_effective']})"
            )
        return card

    def _threshold_card(self) -> dict[str, Any]:
        """The decision thresholds behind CP..OF1: the global one, and the checkpoint's fitted
        per-class ones (``metrics.at_fitted_thresholds``) when it has them."""
        module: SSGRLModule = self.model
        card: dict[str, Any] = {"global": module.evaluation.threshold, "fitted": None}
        if self.subcommand == "fit":
            card["note"] = (
                "best.ckpt and last.ckpt each hold per-class max-F1 thresholds fitted on the "
                "validation predictions of their own weights (none without a validation split)"
            )
            return card
        th = None if module.meta is None else module.meta.thresholds
        if th is None:
            card["note"] = (
                "the checkpoint has no fitted thresholds: metrics at the global threshold only "
                "(`ssgrl calibrate` fits them)"
            )
        else:
            card["fitted"] = {"fitted_on": th.fitted_on, "method": th.method}
        return card

    def _selected_on(self, ckpt: str | None) -> str | None:
        """How the evaluated checkpoint was chosen (never on test)."""
        if ckpt is None:
            return None
        meta = self.model.meta
        if meta is not None and meta.selected_on:
            return str(meta.selected_on)
        val_split = None if meta is None else meta.data.get("val_split")
        name = Path(str(ckpt)).name
        if Path(str(ckpt)).stem.startswith("best") and val_split is not None:
            return f"val mAP on split {val_split!r}"
        if val_split is None:
            return f"not selected: {name}, the final epoch (training had no validation split)"
        return f"not selected: {name} as given"

    def _write_metrics(self, stage: str, extra: dict[str, Any]) -> None:
        result = self.model.results.get(stage)
        if result is None or self.trainer.global_rank != 0:
            return
        role = "val" if stage == "val" else "test"
        ckpt = self.config[self.subcommand].get("ckpt_path")
        out = {
            "stage": stage,
            "metrics": result["metrics"],
            "protocol": self._protocol(role, self._selected_on(ckpt)),
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
        caching = [c for c in self.trainer.callbacks if isinstance(c, FeatureCaching)]  # type: ignore[attr-defined]
        if caching:
            extra["feature_cache"] = [dataclasses.asdict(r) for r in caching[0].reports]
        if "val" in self.model.results:
            extra["metrics_of"] = (
                f"the last validation epoch ({self.trainer.current_epoch - 1}); best.ckpt is the "
                "epoch of best_val_mAP: `ssgrl validate --ckpt_path` it for its full metrics"
            )
            self._write_metrics("val", extra)
        elif self.trainer.global_rank == 0:
            write_json(self.run_dir / "metrics.json", extra)

    def _evaluate_checkpoint(self) -> None:
        ckpt = self.config[self.subcommand].get("ckpt_path")
        self.model.checkpoint_to_evaluate = None if ckpt is None else str(ckpt)

    def before_validate(self) -> None:
        self._evaluate_checkpoint()

    def before_test(self) -> None:
        self._evaluate_checkpoint()

    def after_validate(self) -> None:
        self._write_metrics("val", {"run_dir": str(self.run_dir)})

    def after_test(self) -> None:
        self._write_metrics("test", {"run_dir": str(self.run_dir)})


class _ParseOnly(SSGRLCLI):
    """The ``ssgrl fit`` parser, nothing instantiated, no run directory, no seed set."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        # what `fit`/`validate`/`test` add and save in a run's config.yaml
        parser.add_argument("--ckpt_path", type=str | None, default=None)
        parser.add_argument("--weights_only", type=bool | None, default=None)

    def _set_seed(self) -> None:
        pass

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


def parse_config(path: str | Path, *overrides: str) -> Any:
    """A run config read by the very parser of ``ssgrl fit`` (a jsonargparse Namespace with
    ``model``, ``data``, ``trainer`` ...); ValueError with the parser's message if it is bad."""
    from jsonargparse import ArgumentError

    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
    try:
        cli = _ParseOnly(
            SSGRLModule,
            SSGRLDataModule,
            run=False,
            args=["--config", str(path), *overrides],
            auto_configure_optimizers=False,
            parser_kwargs={"exit_on_error": False},
        )
    except ArgumentError as err:
        raise ValueError(_parser_message(str(err))) from None
    return cli.config


def _parser_message(text: str) -> str:
    """jsonargparse's report cut to what a user acts on: the key, then what was wrong."""
    lines = [line.strip().lstrip("- ") for line in text.strip().splitlines()]
    telling = ("not accepted", "does not accept", "unrecognized", "invalid", "unknown")
    details = [line for line in lines[1:] if any(t in line.lower() for t in telling)]
    return " ".join([lines[0], *details]) if lines else text


def run_cli(argv: list[str]) -> SSGRLCLI:
    """Run ``ssgrl fit|validate|test ARGS`` in this process; the CLI object holds the run's
    directory, module (``results``, ``meta``) and trainer. The demo runs through this too."""
    warnings.filterwarnings(
        "ignore", message=r".*module(\(s\)|s)? in eval mode.*"
    )  # frozen BatchNorm
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
    return SSGRLCLI(
        SSGRLModule,
        SSGRLDataModule,
        args=None if argv == sys.argv[1:] else argv,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )


def lightning_main(argv: list[str]) -> int:
    run_cli(argv)
    return 0
