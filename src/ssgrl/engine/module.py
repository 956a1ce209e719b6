"""The LightningModule: builds the network from the data (classes, label graph, embeddings),
trains it with masked BCE, and evaluates with ``ssgrl.metrics``. Loops, devices, precision,
checkpointing and logging come from the Trainer."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from ssgrl.data.datamodule import Batch, SSGRLDataModule
from ssgrl.engine.checkpoint import FORMAT_VERSION, STATE_PREFIX, package_version, read_checkpoint
from ssgrl.engine.features import FeatureCache, weights_fingerprint
from ssgrl.engine.pretrained import load_backbone_weights, pretrained_help
from ssgrl.graph import build_label_graph, embed_class_names
from ssgrl.metrics import compute_metrics
from ssgrl.models.factory import ModelConfig, build_model
from ssgrl.models.ssgrl import SSGRL, Baseline

Optimizer = Literal["adam", "adamw", "sgd"]
Scheduler = Literal["none", "plateau", "onecycle", "cosine"]


def masked_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE with logits averaged over the entries that are not ignored (target -1)."""
    mask = target >= 0
    loss = F.binary_cross_entropy_with_logits(logits, target.clamp(min=0), reduction="none")
    return (loss * mask).sum() / mask.sum().clamp(min=1)


class SSGRLModule(L.LightningModule):
    """SSGRL (or the plain baseline) for multi-label recognition.

    Args:
        arch: ssgrl | baseline.
        backbone: a timm model name; feature_index: which feature stage (-1 = last);
            pool: none | avg2x2 (the paper's pooling after ResNet layer4).
        train_stages: freezing policy, the number of last backbone stages that train
            (-1 all, 0 frozen; the paper: 1 = layer4). Frozen BatchNorm stays in eval mode.
        d1, d2: the semantic-decoupling widths; ggnn_steps: T.
        reset_gate_uses_update_weights: the authors' GGNN quirk (imported weights only).
        learn_embeddings: train the label embeddings.
        pretrained: none | timm | efficientnet-lite0 | PATH of backbone ImageNet weights.
        embeddings: glove50 | glove-file | minilm | onehot (label embedding source);
            embeddings_path: the GloVe text file for glove-file.
        graph_diagonal / graph_threshold / graph_reweight: label-graph options.
        optimizer, lr, weight_decay, scheduler (none | plateau | onecycle | cosine),
            plateau_patience, plateau_factor: the optimisation recipe.
        ap_mode: noninterp | voc | voc07; threshold, top_k: for CP/CR/F1.
        cache_features: compute the frozen backbone's features once (exact; needs
            train_stages 0 and data.train_augment none).
    """

    def __init__(
        self,
        arch: Literal["ssgrl", "baseline"] = "ssgrl",
        backbone: str = "tf_efficientnet_lite0",
        feature_index: int = -1,
        pool: Literal["none", "avg2x2"] = "none",
        train_stages: int = 1,
        d1: int = 512,
        d2: int = 512,
        ggnn_steps: int = 3,
        reset_gate_uses_update_weights: bool = False,
        learn_embeddings: bool = False,
        pretrained: str = "efficientnet-lite0",
        embeddings: Literal["glove50", "glove-file", "minilm", "onehot"] = "glove50",
        embeddings_path: str | None = None,
        graph_diagonal: Literal[0, 1] = 1,
        graph_threshold: float | None = None,
        graph_reweight: float | None = None,
        optimizer: Optimizer = "adam",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        scheduler: Scheduler = "none",
        plateau_patience: int = 2,
        plateau_factor: float = 0.1,
        ap_mode: Literal["noninterp", "voc", "voc07"] = "noninterp",
        threshold: float = 0.5,
        top_k: int = 3,
        cache_features: bool = False,
        feature_cache: FeatureCache | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["feature_cache"])
        self.model_config = ModelConfig(
            arch=arch,
            backbone=backbone,
            feature_index=feature_index,
            pool=pool,
            train_stages=train_stages,
            d1=d1,
            d2=d2,
            ggnn_steps=ggnn_steps,
            reset_gate_uses_update_weights=reset_gate_uses_update_weights,
            learn_embeddings=learn_embeddings,
        )
        self.feature_cache = feature_cache
        self._test_key: tuple[str, ...] | None = None
        self.net: SSGRL | Baseline | None = None
        self.meta: dict[str, Any] = {}
        self._outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.results: dict[str, dict[str, Any]] = {}

    # -- building ------------------------------------------------------------------------------
    @property
    def datamodule(self) -> SSGRLDataModule:
        dm = getattr(self.trainer, "datamodule", None)
        if not isinstance(dm, SSGRLDataModule):
            raise TypeError("SSGRLModule needs an SSGRLDataModule (the `data:` section)")
        return dm

    def build(self, dm: SSGRLDataModule, load_pretrained: bool = True) -> None:
        """Build the network for ``dm``'s classes, label graph and embeddings."""
        hp: Any = self.hparams
        train = dm.train_split
        classes = list(train.classes)
        if not 1 <= hp.top_k <= len(classes):
            raise ValueError(
                f"model.top_k must be between 1 and the number of classes ({len(classes)}), "
                f"got {hp.top_k}"
            )
        adjacency = embeddings = None
        meta: dict[str, Any] = {"format_version": FORMAT_VERSION}
        if self.model_config.arch == "ssgrl":
            graph = build_label_graph(
                train.targets,
                classes,
                split=f"{dm.dataset}:{dm.split_names['train']}",
                diagonal=hp.graph_diagonal,
                threshold=hp.graph_threshold,
                reweight=hp.graph_reweight,
            )
            emb = embed_class_names(classes, source=hp.embeddings, path=hp.embeddings_path)
            adjacency = torch.from_numpy(np.asarray(graph.matrix, dtype=np.float32))
            embeddings = torch.from_numpy(np.asarray(emb.vectors, dtype=np.float32))
            graph_info = graph.to_dict()
            graph_info.pop("matrix", None)  # the matrix itself is in the state dict
            meta["graph"] = graph_info
            meta["embeddings"] = {"source": emb.source, "words": emb.words, **emb.provenance}
            meta["embed_dim"] = int(embeddings.shape[1])
        net = build_model(
            self.model_config,
            len(classes),
            adjacency,
            embeddings,
            pretrained=load_pretrained and hp.pretrained == "timm",
        )
        origin = "from checkpoint"
        if load_pretrained:
            try:
                origin = load_backbone_weights(net.backbone, hp.pretrained)
            except (FileNotFoundError, ValueError) as err:
                raise type(err)(
                    f"{err}. To start from ImageNet weights give {pretrained_help(hp.backbone)}; or model.pretrained: none to train from scratch"
                ) from err
        net.class_names = classes
        net.preprocessing = dict(dm.preprocessing)
        meta.update(
            model_config=self.model_config.to_dict(),
            class_names=classes,
            preprocessing=dict(dm.preprocessing),
            pretrained=origin,
            package_version=package_version(),
            dataset=dm.dataset,
            train_split=dm.split_names["train"],
            val_split=dm.split_names["val"],
        )
        self.net = net
        self.meta = meta

    def setup(self, stage: str) -> None:
        if self.net is None:
            self.build(self.datamodule, load_pretrained=stage == "fit")
        if stage == "fit" and self._hp.cache_features:
            # here, before any dataloader is requested (a step-based scheduler asks early)
            self._cache_features(self.trainer.strategy.root_device)

    def _cache_key(self, role: str) -> tuple[str, ...]:
        """Identifies the features of a split exactly: backbone weights, input and split."""
        dm = self.datamodule
        return (
            self.model_config.backbone,
            str(self.model_config.feature_index),
            self.model_config.pool,
            weights_fingerprint(self._net.backbone),
            json.dumps(dm.preprocessing, sort_keys=True),
            dm.dataset,
            str(dm.root),
            json.dumps(dm.dataset_options, sort_keys=True, default=str),
            str(dm.split_names[role]),
            str(self.trainer.precision),
        )

    def on_test_start(self) -> None:
        # the checkpoint's weights are in place now: test features are cached under them
        self._test_key = self._cache_key("test") if self._hp.cache_features else None
        if self._test_key is not None and self.feature_cache is None:
            self.feature_cache = FeatureCache()

    def _cache_features(self, device: torch.device) -> None:
        net, dm = self._net, self.datamodule
        cache = self.feature_cache if self.feature_cache is not None else FeatureCache()
        self.feature_cache = cache
        resume = self.trainer.ckpt_path
        if resume:
            # Lightning restores weights after setup: put the checkpoint's backbone in place
            # first, so the cached features are those of the weights that will train on them
            state = read_checkpoint(resume)["state_dict"]
            prefix = STATE_PREFIX + "backbone."
            net.backbone.load_state_dict(
                {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            )
        for role in ("train", "val"):
            if dm.split_names[role] is None:
                continue
            key = self._cache_key(role)
            backbone = net.backbone.to(device)
            features = cache.get_or_compute(
                key, backbone, dm.image_dataset(role), dm.eval_batch_size, dm.num_workers, device
            )
            dm.set_features(role, features)

    @property
    def _hp(self) -> Any:
        return self.hparams

    @property
    def _net(self) -> SSGRL | Baseline:
        if self.net is None:
            raise RuntimeError("the network is built in setup(); call trainer.fit/test first")
        return self.net

    # -- checkpoints ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ssgrl"] = {**self.meta, "config": _plain(dict(self.hparams))}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("ssgrl")
        if meta is None:
            raise ValueError("not an ssgrl checkpoint (no 'ssgrl' block)")
        saved = ModelConfig.from_dict(meta["model_config"])
        if self.net is not None and list(meta["class_names"]) != list(self.net.class_names):
            raise ValueError(
                f"the checkpoint was trained on classes {meta['class_names']}, but the data has "
                f"{self.net.class_names}"
            )
        if saved != self.model_config:
            raise ValueError(
                f"the checkpoint's model {saved} differs from the configured one {self.model_config}"
            )
        net = self.net
        state = {
            k.removeprefix(STATE_PREFIX): v
            for k, v in checkpoint.get("state_dict", {}).items()
            if k.startswith(STATE_PREFIX)
        }
        current = {} if net is None else net.state_dict()
        if net is not None and any(
            k in current and current[k].shape != v.shape for k, v in state.items()
        ):
            # The checkpoint fixes the shapes (e.g. an imported model's 300-d word vectors where
            # the config names another embedding source): build the network its metadata
            # describes; Lightning loads its weights, graph and embeddings right after this hook.
            rebuilt = build_model(saved, net.num_classes, embed_dim=meta.get("embed_dim"))
            rebuilt.class_names = net.class_names
            rebuilt.preprocessing = net.preprocessing
            self.net = rebuilt
        saved_pre = meta.get("preprocessing")
        current_pre = getattr(getattr(self.trainer, "datamodule", None), "preprocessing", None)
        if saved_pre and current_pre and dict(saved_pre) != dict(current_pre):
            warnings.warn(
                f"the data preprocessing {current_pre} differs from the checkpoint's {saved_pre}: "
                "scores will differ from `ssgrl predict`; set data.image_size/resize/mean/std/"
                "interpolation to the checkpoint's values to evaluate it as it was trained",
                stacklevel=2,
            )
        self.meta = dict(meta)
        if self.net is not None:
            self.net.preprocessing = dict(meta.get("preprocessing", self.net.preprocessing))

    # -- steps ---------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._net(images)

    def _logits(self, batch: Batch) -> torch.Tensor:
        if "features" in batch:
            return self._net.head(batch["features"])
        key = self._test_key
        if self.trainer.testing and key is not None and self.feature_cache is not None:
            feats = self.feature_cache.batch(
                key, batch["index"], batch["image"], self._net.backbone
            )
            return self._net.head(feats)
        return self._net(batch["image"])

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = masked_bce(self._logits(batch), batch["target"])
        self.log(
            "train/loss",
            loss,
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=len(batch["target"]),
        )
        return loss

    def _eval_step(self, batch: Batch) -> None:
        logits = self._logits(batch)
        loss = masked_bce(logits, batch["target"])
        self.log(
            f"{self._stage}/loss",
            loss,
            prog_bar=True,
            batch_size=len(batch["target"]),
            sync_dist=True,
        )
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
        hp: Any = self.hparams
        with warnings.catch_warnings():
            if self.trainer.sanity_checking:
                warnings.simplefilter("ignore")
            metrics = compute_metrics(
                logits.astype(np.float64),
                target.astype(np.int8),
                class_names=list(split.classes),
                ap_mode=hp.ap_mode,
                threshold=hp.threshold,
                top_k=hp.top_k,
                logits=True,
            )
        self.results[stage] = {
            "logits": logits,
            "index": index,
            "target": target,
            "metrics": metrics,
        }
        topk = metrics[f"top{hp.top_k}"]
        scalars = {
            f"{stage}/{k}": float(metrics[k]) for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")
        }
        scalars.update(
            {f"{stage}/top{hp.top_k}_{k}": float(v) for k, v in topk.items() if v is not None}
        )
        self.log_dict(scalars, rank_zero_only=True)
        self.log(f"{stage}/mAP", float(metrics["mAP"]), prog_bar=True, rank_zero_only=True)
        return metrics

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val")

    def on_test_epoch_end(self) -> None:
        self._evaluate("test")

    # -- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp: Any = self.hparams
        params = [p for p in self._net.parameters() if p.requires_grad]
        if not params:
            raise ValueError("nothing to train: every parameter is frozen")
        opt: torch.optim.Optimizer
        if hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        elif hp.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=0.9, weight_decay=hp.weight_decay)
        else:
            raise ValueError(f"unknown optimizer {hp.optimizer!r}; expected adam, adamw or sgd")
        if hp.scheduler == "none":
            return opt
        if hp.scheduler == "plateau":
            if self.datamodule.split_names["val"] is None:
                raise ValueError("scheduler 'plateau' watches val/mAP: configure data.val_split")
            sched: Any = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="max", factor=hp.plateau_factor, patience=hp.plateau_patience
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/mAP"}}
        steps = int(self.trainer.estimated_stepping_batches)
        if hp.scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp.lr, total_steps=steps)
        elif hp.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        else:
            raise ValueError(f"unknown scheduler {hp.scheduler!r}")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _plain(value: Any) -> Any:
    """Config values as plain data (safe for ``torch.load(weights_only=True)``)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


__all__ = ["SSGRLModule", "masked_bce", "write_json"]
