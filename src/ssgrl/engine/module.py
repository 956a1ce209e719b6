"""The LightningModule: handed a network config, it builds the network with
``ssgrl.engine.build`` (from the training split, or from a checkpoint when it only evaluates),
then keeps loss, steps, evaluation and optimisers. Loops, devices, precision, checkpointing and
logging come from the Trainer; feature caching is a Callback (``ssgrl.engine.features``).

Several processes (``--trainer.strategy ddp``): the training loss is the mean over the entries
of the *global* batch (every process's part), and the duplicates a ``DistributedSampler`` pads
the last shard with are left out of it, so a step of N processes with batch b each is the step
of one process with batch N*b. Validation and test gather every process's outputs and count
each image once. A non-finite loss skips the step on every process alike (the decision is taken
on the all-reduced loss), up to ``model.optim.max_nonfinite_steps`` in a row; one more stops
training with the step and the batch's sample ids. No checkpoint with non-finite weights is
written. Resuming (``fit --ckpt_path``) with data whose classes or label graph differ from the
checkpoint's is refused with what differs.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DistributedSampler

from ssgrl.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    Network,
    Thresholds,
    attach_meta,
    network_skeleton,
    read_checkpoint,
)
from ssgrl.data.datamodule import Batch, SSGRLDataModule
from ssgrl.engine.build import build_network, resolve_model_config, resolve_preprocessing
from ssgrl.engine.losses import LossConfig, loss_entries, masked_loss
from ssgrl.graph import EmbeddingOptions, GraphOptions, LabelGraph
from ssgrl.graph.cooccurrence import graph_differences
from ssgrl.inference.thresholds import fit_thresholds, metrics_at_thresholds, probabilities
from ssgrl.metrics import PRF_KEYS, compute_metrics
from ssgrl.models.factory import ModelConfig

Optimizer = Literal["adam", "adamw", "sgd"]
Scheduler = Literal["none", "plateau", "onecycle", "cosine"]


@dataclass(frozen=True)
class OptimConfig:
    """The optimisation recipe: the config's ``model.optim`` section."""

    optimizer: Optimizer = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    scheduler: Scheduler = "none"  # plateau watches val/mAP; onecycle/cosine step per batch
    plateau_patience: int = 2
    plateau_factor: float = 0.1
    # a NaN/inf loss skips its step (no update); this many in a row are skipped,
    # one more stops training with the step and the ids of the batch's samples
    max_nonfinite_steps: int = 3


@dataclass(frozen=True)
class EvalConfig:
    """How evaluation scores: the config's ``model.evaluation`` section. ``top_k`` is clamped to
    the number of classes (the protocol card says so)."""

    ap_mode: Literal["noninterp", "voc", "voc07"] = "noninterp"
    threshold: float = 0.5
    top_k: int = 3


class NonFiniteLossError(RuntimeError):
    """Training stopped: the loss was NaN or infinite for more steps in a row than
    ``model.optim.max_nonfinite_steps``; the message names the step and the batch's samples."""


class NonFiniteWeightsError(RuntimeError):
    """A checkpoint was about to be written with NaN or infinite weights (it is not written)."""


class NonFiniteLossWarning(UserWarning):
    """A step was skipped because its loss was NaN or infinite."""


# train/loss is logged as the global batch's loss, already the same on every process
warnings.filterwarnings("ignore", message=r".*self\.log\('train/loss', \.\.\., sync_dist=True\)")


def masked_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE with logits averaged over the entries that are not ignored (target -1)."""
    return masked_loss(logits, target, LossConfig())


def _as(cls: type[Any], value: Any) -> Any:
    """A config section as its dataclass (LightningCLI gives instances, a checkpoint dicts)."""
    return value if isinstance(value, cls) else cls(**dict(value or {}))


class SSGRLModule(L.LightningModule):
    """SSGRL (or the plain baseline) for multi-label recognition.

    Args:
        net: the architecture, a preset name (``ssgrl-lite0``, ``ssgrl-resnet101``, ...) or the
            fields of ``ssgrl.models.factory.ModelConfig``.
        pretrained: none | timm | efficientnet-lite0 | PATH of the backbone's ImageNet weights.
        graph: how the label graph is built from the training labels.
        embeddings: where the label embeddings come from.
        optim: the optimisation recipe; evaluation: how val/test are scored.
        loss: the training loss, bce | focal | asl (``ssgrl.engine.losses``); val/loss and
            test/loss are the same loss, so training and validation curves compare.
    """

    def __init__(
        self,
        net: ModelConfig | str = "ssgrl-lite0",
        pretrained: str = "efficientnet-lite0",
        graph: GraphOptions = GraphOptions(),  # noqa: B008 (frozen dataclasses)
        embeddings: EmbeddingOptions = EmbeddingOptions(),  # noqa: B008
        optim: OptimConfig = OptimConfig(),
        evaluation: EvalConfig = EvalConfig(),
        loss: LossConfig = LossConfig(),  # noqa: B008
    ) -> None:
        super().__init__()
        self.model_config = resolve_model_config(net)
        self.pretrained = pretrained
        self.graph_options: GraphOptions = _as(GraphOptions, graph)
        self.embedding_options: EmbeddingOptions = _as(EmbeddingOptions, embeddings)
        self.optim: OptimConfig = _as(OptimConfig, optim)
        self.evaluation: EvalConfig = _as(EvalConfig, evaluation)
        self.loss_config: LossConfig = _as(LossConfig, loss)
        if self.optim.max_nonfinite_steps < 0:
            raise ValueError(
                "model.optim.max_nonfinite_steps must be >= 0 (0: stop at the first non-finite "
                f"loss), got {self.optim.max_nonfinite_steps}"
            )
        self.save_hyperparameters(
            {
                "net": self.model_config.to_dict(),
                "pretrained": pretrained,
                "graph": dataclasses.asdict(self.graph_options),
                "embeddings": dataclasses.asdict(self.embedding_options),
                "optim": dataclasses.asdict(self.optim),
                "evaluation": dataclasses.asdict(self.evaluation),
                "loss": dataclasses.asdict(self.loss_config),
            }
        )
        self.net: Network | None = None
        self.meta: CheckpointMeta | None = None
        self.run_config: dict[str, Any] = {}  # the resolved config of the run, for checkpoints
        self.checkpoint_to_evaluate: str | None = None  # set by `ssgrl validate/test --ckpt_path`
        self._outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.results: dict[str, dict[str, Any]] = {}
        self._fitted: tuple[int, Thresholds | None] | None = None  # (global_step, thresholds)
        self.label_graph: LabelGraph | None = None  # the graph counted on the configured data
        self.nonfinite_in_a_row = 0
        self.skipped_steps: list[int] = []  # global steps skipped for a non-finite loss
        self._skip_step = False

    # -- building ------------------------------------------------------------------------------
    @property
    def datamodule(self) -> SSGRLDataModule:
        dm = getattr(self.trainer, "datamodule", None)
        if not isinstance(dm, SSGRLDataModule):
            raise TypeError("SSGRLModule needs an SSGRLDataModule (the `data:` section)")
        return dm

    def setup(self, stage: str) -> None:
        dm = self.datamodule
        if self.net is not None:  # built by an earlier stage of the same run
            assert self.meta is not None
            dm.use_classes(self.meta.class_names)
            dm.use_preprocessing(self.meta.preprocessing)
            return
        # Lightning hands the checkpoint path to the Trainer only after setup: the CLI sets it
        ckpt = self.checkpoint_to_evaluate or self.trainer.ckpt_path
        if stage != "fit" and ckpt and Path(str(ckpt)).is_file():
            self._build_from_checkpoint(str(ckpt), dm)
        else:
            self._build_from_data(dm, load_pretrained=stage == "fit")

    def _build_from_checkpoint(self, ckpt: str, dm: SSGRLDataModule) -> None:
        """Evaluate a checkpoint: classes, graph, embeddings and preprocessing are its own, so
        only the evaluated split's images are read."""
        _, meta = read_checkpoint(ckpt)
        if meta.model != self.model_config:
            self.print(
                f"note: evaluating the checkpoint's network ({_diff(self.model_config, meta.model)}"
                "), not model.net of the config"
            )
        requested = dm.preprocessing_request
        pre = meta.preprocessing
        if (requested.image_size, requested.resize or requested.image_size) != (
            pre.image_size,
            pre.resize,
        ):
            self.print(
                f"note: images are prepared as the checkpoint was trained ({pre.describe()}), "
                f"not at data.image_size {requested.image_size} / data.resize {requested.resize}"
            )
        self.net = network_skeleton(meta)
        self.meta = meta
        dm.use_classes(meta.class_names)
        dm.use_preprocessing(meta.preprocessing)

    def _build_from_data(self, dm: SSGRLDataModule, load_pretrained: bool) -> None:
        pre = resolve_preprocessing(self.model_config.backbone, dm.preprocessing_request)
        dm.use_preprocessing(pre)
        train = dm.load("train")
        result = build_network(
            self.model_config,
            train,
            f"{dm.dataset}:{dm.split_names['train']}",
            pre,
            graph=self.graph_options,
            embeddings=self.embedding_options,
            pretrained=self.pretrained if load_pretrained else "none",
            data={
                "dataset": dm.dataset,
                "root": dm.root,
                "train_split": dm.split_names["train"],
                "val_split": dm.split_names["val"],
                "dataset_options": dm.dataset_options,
            },
        )
        self.net, self.meta = result.net, result.meta
        self.label_graph = result.graph
        if result.embeddings is not None and load_pretrained:
            lines = "\n  ".join(result.embeddings.describe())
            self.print(f"label embeddings ({result.embeddings.source}) from the words:\n  {lines}")

    @property
    def _net(self) -> Network:
        if self.net is None:
            raise RuntimeError("the network is built in setup(); call trainer.fit/test first")
        return self.net

    @property
    def _meta(self) -> CheckpointMeta:
        if self.meta is None:
            raise RuntimeError("the network is built in setup(); call trainer.fit/test first")
        return self.meta

    # -- frozen stages stay frozen ---------------------------------------------------------------
    # Lightning never calls .train() when fitting starts and restores each submodule's mode
    # after validation as it was captured; the freezing policy is re-applied at both points.
    def on_train_start(self) -> None:
        self._net.train()

    def on_train_epoch_start(self) -> None:
        self._net.train()

    def on_validation_model_train(self) -> None:
        self.trainer.model.train()  # type: ignore[union-attr]

    # -- checkpoints ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        bad = _nonfinite_tensors(checkpoint.get("state_dict") or {})
        if bad:
            raise NonFiniteWeightsError(
                f"refusing to write a checkpoint (global step {checkpoint.get('global_step')}, "
                f"epoch {checkpoint.get('epoch')}): the weights are not finite "
                f"({_describe_nonfinite(bad)}). "
                "Training diverged: lower model.optim.lr, or train at trainer.precision 32-true"
            )
        meta = dataclasses.replace(self._meta, config=self.run_config or dict(self.hparams))
        if self.trainer.state.fn == "fit":
            # each checkpoint (best and last) carries thresholds fitted on the validation
            # predictions of its own weights; none without a validation of these weights
            meta = dataclasses.replace(meta, thresholds=self.fitted_thresholds())
        attach_meta(checkpoint, meta)
        # The run's config travels in the ssgrl block. Lightning's own copy of the module's
        # arguments would make LightningCLI replace the model options given with --ckpt_path
        # (evaluation settings, a changed graph on resume) by the checkpoint's, silently.
        checkpoint.pop("hyper_parameters", None)

    def fitted_thresholds(self) -> Thresholds | None:
        """Per-class max-F1 thresholds fitted on the validation split's predictions of the
        current weights (``results["val"]`` of this global step); None when there are none:
        no validation split, unlabelled, a sanity check, or a validation of other weights."""
        step = self.trainer.global_step
        if self._fitted is not None and self._fitted[0] == step:
            return self._fitted[1]
        val = self.results.get("val") or {}
        dm = self.datamodule
        name = dm.split_names["val"]
        thresholds = None
        if (
            val.get("target") is not None
            and val.get("global_step") == step
            and not val.get("sanity")
            and name is not None
            and name != dm.split_names["test"]  # never fitted on the test split
        ):
            fitted_on = f"{dm.dataset}:{name}, epoch {val['epoch']}, {len(val['target'])} images"
            thresholds = fit_thresholds(
                probabilities(val["logits"]),
                val["target"],
                self._meta.class_names,
                fitted_on,
                global_threshold=self.evaluation.threshold,
            ).thresholds
        self._fitted = (step, thresholds)
        return thresholds

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "ssgrl" not in checkpoint:
            raise CheckpointError("not an ssgrl checkpoint (no 'ssgrl' block)")
        meta = CheckpointMeta.from_dict(checkpoint["ssgrl"])
        current = self._meta
        if meta.class_names != current.class_names:
            raise CheckpointError(
                f"the checkpoint was trained on classes {meta.class_names}, but the data has "
                f"{current.class_names}"
            )
        if meta.model != current.model:
            raise CheckpointError(
                f"the checkpoint's network differs from the configured one: "
                f"{_diff(current.model, meta.model)}"
            )
        if self.trainer.state.fn == "fit":
            self._check_resumed_graph(meta)
        self.meta = meta

    def _check_resumed_graph(self, meta: CheckpointMeta) -> None:
        """Resuming continues training with the checkpoint's label graph (its adjacency is in the
        restored weights): refused unless the configured data counts the very same graph.
        Evaluation never rebuilds the graph, so ``validate``/``test`` of other data with the
        same classes is allowed."""
        counted = self.label_graph
        if meta.graph is None and counted is None:  # the baseline: no graph
            return
        where = f"checkpoint {self.trainer.ckpt_path}" if self.trainer.ckpt_path else "checkpoint"
        if meta.graph is None or counted is None:
            has = "has no label graph" if meta.graph is None else "has a label graph"
            raise CheckpointError(
                f"cannot resume from {where}: it {has}, the configured model does not agree"
            )
        differences = graph_differences(meta.graph, counted)
        if differences:
            raise CheckpointError(
                f"cannot resume from {where} on this data: its label graph was counted on other "
                f"data than the graph of the configured training split ({counted.split}, "
                f"{counted.num_images} images): "
                + "; ".join(differences)
                + ". Resume with the data and model.graph options it was trained with, or start "
                "a new fit (without --ckpt_path); `ssgrl validate/test --ckpt_path` may evaluate "
                "it on other data with the same classes"
            )

    # -- steps ---------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._net(images)

    def _logits(self, batch: Batch) -> torch.Tensor:
        if "features" in batch:
            return self._net.head(batch["features"])
        return self._net(batch["image"])

    def on_fit_start(self) -> None:
        self.nonfinite_in_a_row = 0
        self.skipped_steps = []

    def on_train_epoch_end(self) -> None:
        # steps skipped for a non-finite loss so far (the same count on every process)
        self.log("train/skipped_steps", float(len(self.skipped_steps)), sync_dist=True)

    def training_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        """The masked loss (``model.loss``, BCE by default) averaged over the global batch; ``counted``: the indices of the
        batch's samples in the loss (a DistributedSampler's padding duplicates are not).

        Each process returns its entries' loss sum times the number of processes over the
        global entry count; the data-parallel gradient average then gives the gradient of the
        global mean, whatever the split of entries (ignored targets, an uneven last batch).

        A non-finite global loss skips the step (``skipped``: True): Lightning refuses a None
        from ``training_step`` under several processes, so the step returns a loss whose
        gradient is exactly zero and that reaches no activation (no backward through the
        network; every process still takes part in the gradient all-reduce), and
        ``optimizer_step`` leaves the optimizer alone: no update, no momentum or weight decay."""
        logits = self._logits(batch)
        target = batch["target"]
        counted = self._not_padding(batch_idx, len(target), target.device)
        mask = (target >= 0) & counted[:, None]
        entries = loss_entries(logits, target.clamp(min=0), self.loss_config)
        entries = torch.where(mask, entries, torch.zeros_like(entries))
        local_sum = entries.sum()
        stats = torch.stack([local_sum.detach().float(), mask.sum().float(), counted.sum().float()])
        # one all-reduce: the global batch's loss sum, entry count and sample count
        total, count, samples = self.trainer.strategy.reduce(stats, reduce_op="sum")
        count = count.clamp(min=1)
        if not bool(torch.isfinite(total)):  # the same decision on every process
            self._skip_nonfinite(batch, batch_idx, entries, counted, float(total))
            self._skip_step = True
            trainable = [p for p in self._net.parameters() if p.requires_grad]
            zero = torch.stack([p.sum() for p in trainable]).sum() * 0.0
            return {"loss": zero, "counted": batch["index"][:0], "skipped": True}
        self.nonfinite_in_a_row = 0
        self._skip_step = False
        loss = local_sum * self.trainer.world_size / count
        self.log(
            "train/loss",
            float(total / count),  # the global batch's loss, the same on every process
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=max(int(samples), 1),
        )
        return {"loss": loss, "counted": batch["index"][counted].detach(), "skipped": False}

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: Any,
        optimizer_closure: Any = None,
    ) -> None:
        """The optimizer's step, unless the step's loss was not finite (see ``training_step``).
        The closure (training step and backward) runs first either way, once."""
        if optimizer_closure is None:
            optimizer.step()
            return
        result = optimizer_closure()
        if self._skip_step:
            self._skip_step = False
            return
        optimizer.step(closure=lambda: result)

    def _not_padding(self, batch_idx: int, size: int, device: torch.device) -> torch.Tensor:
        """(B,) bool: False for the samples a DistributedSampler repeated to give every process
        equal shards (they are counted on the process that drew them first)."""
        keep = torch.ones(size, dtype=torch.bool, device=device)
        loader = self.trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        batch_size = getattr(loader, "batch_size", None)
        if not isinstance(sampler, DistributedSampler) or sampler.drop_last or not batch_size:
            return keep
        n = len(sampler.dataset)  # type: ignore[arg-type]
        if sampler.total_size <= n:
            return keep
        local = batch_idx * batch_size + torch.arange(size, device=device)
        if int(local[-1]) >= sampler.num_samples:  # not the sampler's order (e.g. mid-epoch)
            return keep
        position = local * sampler.num_replicas + sampler.rank  # in the padded global order
        return position < n

    def _skip_nonfinite(
        self,
        batch: Batch,
        batch_idx: int,
        entries: torch.Tensor,
        counted: torch.Tensor,
        total: float,
    ) -> None:
        """Skip this step (every process does), or stop after too many in a row."""
        self.nonfinite_in_a_row += 1
        step = self.trainer.global_step
        limit = self.optim.max_nonfinite_steps
        bad_rows = ~torch.isfinite(entries).all(dim=1) & counted
        ids, bad_ids = self._batch_ids(batch["index"][counted], batch["index"][bad_rows])
        where = f"step {step} (epoch {self.current_epoch}, batch {batch_idx})"
        samples = f"the batch's samples: {_id_list(ids)}" + (
            f"; not finite for {_id_list(bad_ids)}" if bad_ids else ""
        )
        if self.nonfinite_in_a_row > limit:
            weights = _nonfinite_tensors(self._net.state_dict())
            cause = (
                f" The weights are not finite ({_describe_nonfinite(weights)}): training "
                "diverged at an earlier step; lower model.optim.lr."
                if weights
                else " Check these images and their labels, lower model.optim.lr, or train at "
                "trainer.precision 32-true."
            )
            raise NonFiniteLossError(
                f"training stopped at {where}: the loss was not finite ({total}) at "
                f"{self.nonfinite_in_a_row} steps in a row, more than model.optim."
                f"max_nonfinite_steps = {limit}; {samples}.{cause}"
            )
        self.skipped_steps.append(step)
        rank_zero_warn(
            f"{where}: the loss is not finite ({total}); the step is skipped, no update "
            f"({self.nonfinite_in_a_row} in a row, at most {limit}: model.optim."
            f"max_nonfinite_steps); {samples}",
            category=NonFiniteLossWarning,
        )

    def _batch_ids(self, *indices: torch.Tensor) -> list[list[str]]:
        """Each of ``indices`` (this process's part of the batch) as the training split's image
        ids of the whole global batch, in order, each once."""
        ids = self.datamodule.load("train").ids
        out = []
        for index in indices:
            merged = _gather_rows(self, index) if self.trainer.world_size > 1 else index
            unique = dict.fromkeys(int(i) for i in merged.cpu().tolist())
            out.append([str(ids[i]) for i in sorted(unique)])
        return out

    def _eval_step(self, batch: Batch) -> None:
        logits = self._logits(batch)
        self._outputs.append(
            (logits.detach().float(), batch["target"].detach(), batch["index"].detach())
        )

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch)

    @property
    def _stage(self) -> str:
        return "test" if self.trainer.testing else "val"

    def on_validation_epoch_start(self) -> None:
        self._outputs = []

    def on_test_epoch_start(self) -> None:
        self._outputs = []

    def gather_outputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Logits, targets and indices of the whole split, each image exactly once even when a
        distributed sampler padded the shards with duplicates."""
        if not self._outputs:
            raise RuntimeError("no evaluation outputs were collected")
        logits = torch.cat([o[0] for o in self._outputs])
        target = torch.cat([o[1] for o in self._outputs])
        index = torch.cat([o[2] for o in self._outputs])
        if self.trainer.world_size > 1:
            logits, target, index = (
                torch.as_tensor(self.all_gather(t)).flatten(0, 1) for t in (logits, target, index)
            )
        index_np = index.cpu().numpy()
        _, first = np.unique(index_np, return_index=True)
        return logits.cpu().numpy()[first], target.cpu().numpy()[first], index_np[first]

    def _evaluate(self, stage: str) -> dict[str, Any] | None:
        logits, target, index = self.gather_outputs()
        self._outputs = []
        role = "val" if stage == "val" else "test"
        split = self.datamodule.load(role)
        if not split.has_labels:
            self.results[stage] = {"logits": logits, "index": index, "metrics": None}
            return None
        ev = self.evaluation
        # the split's loss from the gathered outputs: each image once, whatever the processes
        loss = float(
            masked_loss(
                torch.from_numpy(logits), torch.from_numpy(target).float(), self.loss_config
            )
        )
        with warnings.catch_warnings():
            if self.trainer.sanity_checking:
                warnings.simplefilter("ignore")
            metrics = compute_metrics(
                logits.astype(np.float64),
                target.astype(np.int8),
                class_names=list(split.classes),
                ap_mode=ev.ap_mode,
                threshold=ev.threshold,
                top_k=ev.top_k,
                logits=True,
            )
        if self.trainer.state.fn != "fit":  # validate/test a checkpoint: its own thresholds too
            metrics["at_fitted_thresholds"] = self._at_fitted_thresholds(logits, target)
        self.results[stage] = {
            "logits": logits,
            "index": index,
            "target": target,
            "metrics": metrics,
            "epoch": self.current_epoch,
            "global_step": self.trainer.global_step,
            "sanity": self.trainer.sanity_checking,
        }
        k = metrics["top_k_effective"]
        scalars = {
            f"{stage}/{name}": float(metrics[name])
            for name in ("CP", "CR", "CF1", "OP", "OR", "OF1")
        }
        for variant in (f"top{k}", f"top{k}_mlgcn"):
            scalars.update(
                {f"{stage}/{variant}_{n}": float(v) for n, v in metrics[variant].items()}
            )
        fitted = metrics.get("at_fitted_thresholds")
        if fitted is not None:
            scalars.update({f"{stage}/fitted_{n}": float(fitted[n]) for n in PRF_KEYS})
        # every process holds the gathered outputs and logs the same values, so a callback
        # monitoring val/mAP decides alike on every process (the mean of equal values is exact)
        self.log_dict(scalars, sync_dist=True)
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=True)
        self.log(f"{stage}/mAP", float(metrics["mAP"]), prog_bar=True, sync_dist=True)
        return metrics

    def _at_fitted_thresholds(
        self, logits: np.ndarray, target: np.ndarray
    ) -> dict[str, Any] | None:
        """CP..OF1 (percent) at the checkpoint's per-class thresholds, None when it has none."""
        th = self._meta.thresholds
        if th is None:
            return None
        return {
            **metrics_at_thresholds(probabilities(logits), target, th.values),
            "fitted_on": th.fitted_on,
            "method": th.method,
        }

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val")

    def on_test_epoch_end(self) -> None:
        self._evaluate("test")

    # -- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        o = self.optim
        params = [p for p in self._net.parameters() if p.requires_grad]
        if not params:
            raise ValueError("nothing to train: every parameter is frozen")
        opt: torch.optim.Optimizer
        if o.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        elif o.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
        elif o.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=o.lr, momentum=0.9, weight_decay=o.weight_decay)
        else:
            raise ValueError(f"unknown optimizer {o.optimizer!r}; expected adam, adamw or sgd")
        if o.scheduler == "none":
            return opt
        if o.scheduler == "plateau":
            if self.datamodule.split_names["val"] is None:
                raise ValueError(
                    "model.optim.scheduler plateau watches val/mAP: configure data.val_split"
                )
            sched: Any = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="max", factor=o.plateau_factor, patience=o.plateau_patience
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/mAP"}}
        steps = int(self.trainer.estimated_stepping_batches)
        if o.scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o.lr, total_steps=steps)
        elif o.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        else:
            raise ValueError(f"unknown scheduler {o.scheduler!r}")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _diff(a: ModelConfig, b: ModelConfig) -> str:
    """``field: a -> b`` for each field that differs."""
    da, db = a.to_dict(), b.to_dict()
    return ", ".join(f"{k}: {da[k]!r} -> {db[k]!r}" for k in da if da[k] != db[k]) or "same"


def _nonfinite_tensors(state: dict[str, Any]) -> dict[str, int]:
    """Name -> number of NaN/inf entries, for the floating tensors of ``state`` that have any."""
    out = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        t = value.detach()
        # a NaN/inf anywhere makes the sum non-finite: counted exactly only then (fast otherwise)
        if t.numel() and not bool(torch.isfinite(t.sum())):  # (an overflow: counted, 0)
            n = int((~torch.isfinite(t)).sum())
            if n:
                out[name] = n
    return out


def _describe_nonfinite(bad: dict[str, int], most: int = 5) -> str:
    listed = ", ".join(f"{name}: {n} NaN/inf" for name, n in list(bad.items())[:most])
    more = f" and {len(bad) - most} more tensors" if len(bad) > most else ""
    return listed + more


def _id_list(ids: list[str], most: int = 32) -> str:
    return ", ".join(ids[:most]) + (f" ... ({len(ids)} in all)" if len(ids) > most else "")


def _gather_rows(module: L.LightningModule, rows: torch.Tensor) -> torch.Tensor:
    """``rows`` (n, ...) of every process, concatenated in rank order; n may differ."""
    sizes = torch.as_tensor(module.all_gather(torch.tensor(len(rows), device=rows.device)))
    longest = int(sizes.max())
    padded = rows.new_zeros((longest, *rows.shape[1:]))
    padded[: len(rows)] = rows
    gathered = torch.as_tensor(module.all_gather(padded))  # (world, longest, ...)
    return torch.cat([gathered[r, : int(n)] for r, n in enumerate(sizes.flatten())])


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


__all__ = [
    "EvalConfig",
    "NonFiniteLossError",
    "NonFiniteLossWarning",
    "NonFiniteWeightsError",
    "OptimConfig",
    "SSGRLModule",
    "masked_bce",
    "write_json",
]
