"""``ssgrl fit | validate | test``: LightningCLI over SSGRLModule + SSGRLDataModule.

Each run writes into its own directory (``--run_dir``, default ``runs/<time>-<command>``):
``config.yaml`` (the resolved config), TensorBoard event files, ``checkpoints/best.ckpt``
(by validation mAP, never test) and ``checkpoints/last.ckpt``, and ``metrics.json``.

Reliability (``ssgrl.engine.resume``, ``ssgrl.engine.checkpoint_io``): checkpoints are written
atomically with a sha256 sidecar and verified when read; SIGTERM, SIGINT and SLURM's requeue
signal stop ``fit`` after the running step with ``checkpoints/interrupted.ckpt``;
``ssgrl fit --run_dir RUN --ckpt_path last`` resumes a run in its own directory from its newest
intact checkpoint, exactly (same batches, same random states). User errors (bad data, a damaged
checkpoint, a config the parser refuses, a missing file) end with one line
``ssgrl <command>: error: ...`` and exit code 2 (``SSGRL_TRACEBACK=1`` shows the traceback).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ssgrl.checkpoint import CheckpointError, plain_data, remove_checkpoint, verify_checkpoint
from ssgrl.data.datamodule import SSGRLDataModule
from ssgrl.data.decode import ImageDecodeError
from ssgrl.data.labelspace import DatasetFormatError
from ssgrl.data.scan import BadImagesError
from ssgrl.engine.checkpoint_io import CheckpointWriteError, VerifiedCheckpointIO
from ssgrl.engine.features import FeatureCaching
from ssgrl.engine.module import SSGRLModule, write_json
from ssgrl.engine.official import OfficialImportError
from ssgrl.engine.resume import (
    INTERRUPTED_NAME,
    Interrupted,
    Interruption,
    ResumeState,
    find_resumable,
    preserved_signal_handlers,
)
from ssgrl.graph.cooccurrence import GraphMismatchError


class UsageError(ValueError):
    """A command line that cannot run as given; the message says what to change."""


@dataclass
class _RunRecord:
    """What ``lightning_main`` reports after the run (the CLI object is gone on an error)."""

    command: str = "fit"
    run_dir: Path | None = None
    interruption: Interruption | None = None


_RUN = _RunRecord()


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

    resumed_in_place = False

    def _parse_ckpt_path(self) -> None:
        """LightningCLI reads ``--ckpt_path``'s hyperparameters here (``torch.load``, before
        anything is built): resolve ``last`` first, verify the file's checksum, and report a file
        that cannot be read as a CheckpointError naming it."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            super()._parse_ckpt_path()
            return
        cfg = self.config[subcommand]
        if subcommand == "fit" and self._resumes_in_place(cfg):
            run_dir = Path(cfg.run_dir)
            found = find_resumable(run_dir)
            for path, why in found.skipped:
                print(f"ssgrl fit: skipping {path}: {why}", file=sys.stderr)
            print(f"ssgrl fit: resuming {run_dir} from {found.path}", file=sys.stderr)
            cfg.ckpt_path = str(found.path)
            self.resumed_in_place = True
        ckpt = cfg.get("ckpt_path")
        if not ckpt or not Path(ckpt).is_file():
            super()._parse_ckpt_path()
            return
        verify_checkpoint(ckpt)
        try:
            super()._parse_ckpt_path()
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as err:
            raise CheckpointError(
                f"checkpoint {ckpt}: cannot be read as a PyTorch checkpoint ({_gist(err)})"
            ) from err

    def before_instantiate_classes(self) -> None:
        # run=False (no subcommand) parses a flat config: used to instantiate without running
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        command = self.subcommand or "run"
        run_dir = Path(cfg.run_dir) if cfg.run_dir else new_run_dir(cfg.runs_root, command)
        if self.resumed_in_place:
            pass  # the run's own directory, resolved with its checkpoint
        elif run_dir.exists() and any(run_dir.iterdir()):
            raise SystemExit(
                f"ssgrl {command}: error: run directory {run_dir} exists and is not empty; "
                "choose a new --run_dir (or "
                f"resume that run: ssgrl fit --run_dir {run_dir} --ckpt_path last)"
            )
        cfg.run_dir = str(run_dir)
        self.run_dir = run_dir
        _RUN.run_dir = run_dir
        self.run_config: dict[str, Any] = plain_data(cfg.as_dict())
        self.run_config.pop("config", None)

    def _resumes_in_place(self, cfg: Any) -> bool:
        """``--ckpt_path last``: resume the run of ``--run_dir`` in its directory; also a SLURM
        job that was requeued (``SLURM_RESTART_COUNT`` > 0) whose --run_dir has checkpoints."""
        ckpt = cfg.get("ckpt_path")
        if ckpt == "last":
            if not cfg.run_dir:
                raise UsageError(
                    "--ckpt_path last resumes a run in its own directory: give it with --run_dir "
                    "RUN (or give a checkpoint file: --ckpt_path RUN/checkpoints/last.ckpt)"
                )
            return True
        requeued = ckpt is None and cfg.run_dir and _slurm_requeued()
        if requeued and any((Path(cfg.run_dir) / "checkpoints").glob("*.ckpt")):
            print(
                f"ssgrl fit: SLURM job requeued (restart {os.environ['SLURM_RESTART_COUNT']}):"
                f" resuming {cfg.run_dir}",
                file=sys.stderr,
            )
            return True
        return False

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        self.model.run_config = self.run_config
        self.datamodule.report_dir = self.run_dir  # bad_images.txt
        plugins = trainer_cfg.get("plugins")
        plugins = (
            [] if plugins is None else list(plugins) if isinstance(plugins, list) else [plugins]
        )
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(VerifiedCheckpointIO())  # atomic, checksummed, verified
        kwargs["plugins"] = plugins
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
        if self.subcommand == "fit":
            callbacks.append(ResumeState())
            callbacks.append(Interruption(self.run_dir / "checkpoints" / INTERRUPTED_NAME))
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
            "decode": pre.describe_decode(),
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
        # the image id of each row: `ssgrl compare` pairs runs by them
        ids = [str(split.ids[int(i)]) for i in result["index"]]
        split_name = self.datamodule.split_names[role]
        write_json(self.run_dir / f"{stage}_ids.json", {"split": split_name, "ids": ids})
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

    def before_fit(self) -> None:
        interruption = next(
            (c for c in self.trainer.callbacks if isinstance(c, Interruption)),  # type: ignore[attr-defined]
            None,
        )
        if interruption is not None:
            interruption.install(self.trainer)
            _RUN.interruption = interruption

    def after_fit(self) -> None:
        cb = self.trainer.checkpoint_callback
        stale = self.run_dir / "checkpoints" / INTERRUPTED_NAME
        last = cb.last_model_path if isinstance(cb, ModelCheckpoint) else ""
        if self.resumed_in_place and stale.is_file() and last and Path(last).is_file():
            remove_checkpoint(stale)  # last.ckpt, complete and newer, replaces it
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
    telling = (
        *("not accepted", "does not accept", "unrecognized", "invalid", "unknown"),
        *("expected", "given value:", "got value"),
    )
    details = [line for line in lines[1:] if any(t in line.lower() for t in telling)]
    return " ".join([lines[0], *details]) if lines else text


def run_cli(argv: list[str]) -> SSGRLCLI:
    """Run ``ssgrl fit|validate|test ARGS`` in this process; the CLI object holds the run's
    directory, module (``results``, ``meta``) and trainer. The demo runs through this too.
    Errors propagate (``lightning_main`` turns them into messages and exit codes)."""
    warnings.filterwarnings(
        "ignore", message=r".*module(\(s\)|s)? in eval mode.*"
    )  # frozen BatchNorm
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty")
    subcommands = SSGRLCLI.subcommands()
    with preserved_signal_handlers():
        return SSGRLCLI(
            SSGRLModule,
            SSGRLDataModule,
            args=None if argv == sys.argv[1:] else argv,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            # a config error raises (lightning_main reports it) instead of exiting
            parser_kwargs={
                "exit_on_error": False,
                **{c: {"exit_on_error": False} for c in subcommands},
            },
        )


USER_ERRORS: tuple[type[BaseException], ...] = (
    BadImagesError,
    CheckpointError,
    DatasetFormatError,
    GraphMismatchError,
    ImageDecodeError,
    OfficialImportError,
    UsageError,
    FileNotFoundError,
)


def _with_run_config(argv: list[str]) -> list[str]:
    """``ssgrl fit --run_dir RUN --ckpt_path last`` without ``--config`` reads RUN/config.yaml."""
    if not argv or argv[0] != "fit":
        return argv
    options: dict[str, str] = {}
    for i, arg in enumerate(argv):
        if arg.startswith("--") and "=" in arg:
            key, value = arg.split("=", 1)
            options[key] = value
        elif arg.startswith("--") and i + 1 < len(argv):
            options[arg] = argv[i + 1]
    has_config = any(a in ("-c", "--config") or a.startswith("--config=") for a in argv)
    run_dir = options.get("--run_dir")
    if options.get("--ckpt_path") == "last" and run_dir and not has_config:
        config = Path(run_dir) / "config.yaml"
        if config.is_file():
            return [argv[0], "--config", str(config), *argv[1:]]
    return argv


def _gist(err: BaseException) -> str:
    """A long library message cut to what says what was wrong: its first sentence and the
    line naming a refused global (a pickle that would run code)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    first = lines[0].split(". ")[0].rstrip(".")
    extra = [line for line in lines[1:] if "GLOBAL" in line]
    return "; ".join([first, *extra])


def _slurm_requeued() -> bool:
    try:
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    except ValueError:
        return False
    return restarts > 0 and SLURMEnvironment.detect()


def _interrupted_message(command: str) -> str:
    """One line: which signal, at which step, where the checkpoint is, how to resume."""
    interruption = _RUN.interruption
    result: Interrupted | None = None if interruption is None else interruption.result
    name = "SIGTERM" if interruption is None else interruption.signal_name or "SIGTERM"
    if interruption is None:  # validate/test: nothing to resume
        return f"ssgrl {command}: interrupted by {name}"
    if result is None or result.checkpoint is None:
        return f"ssgrl {command}: interrupted by {name} before a checkpoint could be written"
    run_dir = _RUN.run_dir
    line = (
        f"ssgrl {command}: interrupted by {name} at step {result.step} (epoch {result.epoch}); "
        f"checkpoint written: {result.checkpoint}; resume with: ssgrl fit --run_dir {run_dir} "
        "--ckpt_path last"
    )
    if result.requeued:
        line += f" (SLURM job {result.requeued} requeued: it resumes there by itself)"
    return line


def _write_error_message(err: CheckpointWriteError) -> str:
    """What the failed write left: the previous intact checkpoint, and how to go on."""
    run_dir = _RUN.run_dir
    text = str(err)
    if run_dir is None:
        return text
    try:
        found = find_resumable(run_dir)
    except CheckpointError:
        return f"{text}; no earlier checkpoint of this run was complete"
    return (
        f"{text}; nothing was replaced: the newest complete checkpoint is {found.path}. Free "
        f"space, then resume with: ssgrl fit --run_dir {run_dir} --ckpt_path last"
    )


def lightning_main(argv: list[str]) -> int:
    """``ssgrl fit|validate|test``: 0 on success; 2 with one ``ssgrl CMD: error: ...`` line for a
    user error; 1 when a checkpoint cannot be written; 128 + the signal's number when a signal
    stopped ``fit`` (after writing ``checkpoints/interrupted.ckpt``)."""
    from jsonargparse import ArgumentError

    global _RUN
    command = argv[0] if argv else "fit"
    _RUN = _RunRecord(command=command)
    traceback = os.environ.get("SSGRL_TRACEBACK", "") not in ("", "0")
    try:
        run_cli(_with_run_config(argv))
    except SIGTERMException:
        print(_interrupted_message(command), file=sys.stderr)
        interruption = _RUN.interruption
        signum = (interruption.signum if interruption is not None else None) or signal.SIGTERM
        return 128 + int(signum)
    except KeyboardInterrupt:
        if traceback:
            raise
        print(f"ssgrl {command}: interrupted by SIGINT", file=sys.stderr)
        return 128 + int(signal.SIGINT)
    except CheckpointWriteError as err:
        if traceback:
            raise
        print(f"ssgrl {command}: error: {_write_error_message(err)}", file=sys.stderr)
        return 1
    except ArgumentError as err:
        if traceback:
            raise
        print(f"ssgrl {command}: error: {_parser_message(str(err))}", file=sys.stderr)
        return 2
    except USER_ERRORS as err:
        if traceback:
            raise
        print(f"ssgrl {command}: error: {err}", file=sys.stderr)
        return 2
    return 0
