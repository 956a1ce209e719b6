"""The checkpoint contract: what an ssgrl checkpoint holds besides weights, written and read here
and nowhere else.

A checkpoint is a Lightning checkpoint (``state_dict`` with ``net.*`` keys: weights, the
adjacency matrix and the label embeddings) plus ``checkpoint["ssgrl"]``, the plain-data form of
``CheckpointMeta``: class names, model config, preprocessing, the label graph's and the
embeddings' provenance (with the words each class vector came from), per-class thresholds, where
the data came from and the package version. ``load_model`` needs nothing but the file.

Integrity: every checkpoint ssgrl writes (``save_atomically``: the Trainer's checkpoints through
``ssgrl.engine.checkpoint_io``, ``write_checkpoint``, ``ssgrl calibrate``) appears complete or not
at all (temporary file, fsync, rename), with a sidecar ``NAME.sha256`` in ``sha256sum`` format
(``sha256sum -c NAME.sha256`` checks it by hand). Every reader verifies it first
(``verify_checkpoint``), so a truncated or altered file is refused with its name; a file without
a sidecar (written by an older ssgrl, or by hand) is read unverified.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssgrl.data.transforms import Preprocessing
from ssgrl.models.factory import ModelConfig, build_model
from ssgrl.models.ssgrl import SSGRL, Baseline
from ssgrl.provenance import sha256_file

FORMAT_VERSION = 2
STATE_PREFIX = "net."
META_KEY = "ssgrl"

Network = SSGRL | Baseline


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def package_version() -> str:
    """The installed ssgrl version (importlib.metadata), or the source tree's."""
    try:
        return importlib.metadata.version("ssgrl")
    except importlib.metadata.PackageNotFoundError:
        from ssgrl import __version__

        return __version__


@dataclass(frozen=True)
class EmbeddingInfo:
    """Where the label embeddings came from: ``words[c]`` are the vocabulary words averaged
    into class c's vector (None when unknown, e.g. imported vectors)."""

    source: str
    dim: int
    words: list[list[str]] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Thresholds:
    """Per-class decision thresholds on probabilities, with the split they were fitted on."""

    values: list[float]
    fitted_on: str
    method: str
    notes: list[str] = field(default_factory=list)


@dataclass
class CheckpointMeta:
    """Everything besides the weights that a checkpoint needs to predict and to explain itself."""

    class_names: list[str]
    model: ModelConfig
    preprocessing: Preprocessing
    graph: dict[str, Any] | None = None  # provenance of the adjacency in the state dict
    embeddings: EmbeddingInfo | None = None
    pretrained: str = "none"
    data: dict[str, Any] = field(default_factory=dict)  # dataset, splits, options
    thresholds: Thresholds | None = None
    selected_on: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the run's resolved config
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. ``imported_from``
    package_version: str = field(default_factory=package_version)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.check()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def check(self) -> None:
        """Raise ``CheckpointError`` when the parts do not fit together."""
        names = self.class_names
        if not names or len(set(names)) != len(names):
            raise CheckpointError(f"class names must be a non-empty list of unique names: {names}")
        if self.model.arch == "ssgrl" and self.embeddings is None:
            raise CheckpointError("an SSGRL checkpoint needs its label-embedding record")
        words = None if self.embeddings is None else self.embeddings.words
        if words is not None and len(words) != len(names):
            raise CheckpointError(f"{len(words)} embedding word lists for {len(names)} classes")
        if self.thresholds is not None:
            values = self.thresholds.values
            if len(values) != len(names) or not all(0.0 <= v <= 1.0 for v in values):
                raise CheckpointError(
                    f"thresholds must be {len(names)} probabilities in [0, 1], got {values}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain data only (safe for ``torch.load(weights_only=True)``)."""
        emb = self.embeddings
        th = self.thresholds
        return plain_data(
            {
                "format_version": self.format_version,
                "package_version": self.package_version,
                "class_names": list(self.class_names),
                "model_config": self.model.to_dict(),
                "preprocessing": self.preprocessing.to_dict(),
                "graph": self.graph,
                "embeddings": None
                if emb is None
                else {
                    "source": emb.source,
                    "dim": emb.dim,
                    "words": emb.words,
                    "provenance": emb.provenance,
                },
                "pretrained": self.pretrained,
                "data": self.data,
                "thresholds": None
                if th is None
                else {
                    "values": th.values,
                    "fitted_on": th.fitted_on,
                    "method": th.method,
                    "notes": th.notes,
                },
                "selected_on": self.selected_on,
                "config": self.config,
                "extra": self.extra,
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "checkpoint") -> CheckpointMeta:
        """Inverse of ``to_dict``; reads format 1 (ssgrl 0.1) too. Errors name ``source``."""
        try:
            version = int(data.get("format_version", 1))
            if version > FORMAT_VERSION:
                raise CheckpointError(
                    f"format version {version} is newer than this ssgrl understands "
                    f"({FORMAT_VERSION}); upgrade ssgrl"
                )
            if version == 1:
                data = _from_format_1(data)
            emb = data.get("embeddings")
            th = data.get("thresholds")
            return cls(
                class_names=[str(c) for c in data["class_names"]],
                model=ModelConfig.from_dict(dict(data["model_config"])),
                preprocessing=Preprocessing.from_dict(data["preprocessing"]),
                graph=None if data.get("graph") is None else dict(data["graph"]),
                embeddings=None
                if emb is None
                else EmbeddingInfo(
                    source=str(emb["source"]),
                    dim=int(emb["dim"]),
                    words=None
                    if emb.get("words") is None
                    else [[str(w) for w in ws] for ws in emb["words"]],
                    provenance=dict(emb.get("provenance") or {}),
                ),
                pretrained=str(data.get("pretrained", "none")),
                data=dict(data.get("data") or {}),
                thresholds=None
                if th is None
                else Thresholds(
                    values=[float(v) for v in th["values"]],
                    fitted_on=str(th["fitted_on"]),
                    method=str(th["method"]),
                    notes=[str(n) for n in th.get("notes") or []],
                ),
                selected_on=data.get("selected_on"),
                config=dict(data.get("config") or {}),
                extra=dict(data.get("extra") or {}),
                package_version=str(data.get("package_version", "unknown")),
                format_version=FORMAT_VERSION,
            )
        except CheckpointError as err:
            raise CheckpointError(f"{source}: {err}") from None
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"{source}: the ssgrl metadata block is malformed ({type(err).__name__}: {err})"
            ) from None


def _from_format_1(old: Mapping[str, Any]) -> dict[str, Any]:
    """ssgrl 0.1's flat metadata block in today's layout."""
    emb = old.get("embeddings")
    new_emb = None
    if emb is not None:
        provenance = {k: v for k, v in emb.items() if k not in ("source", "words")}
        new_emb = {
            "source": emb["source"],
            "dim": old.get("embed_dim") or 0,
            "words": emb.get("words"),
            "provenance": provenance,
        }
    return {
        **old,
        "embeddings": new_emb,
        "data": {
            "dataset": old.get("dataset"),
            "train_split": old.get("train_split"),
            "val_split": old.get("val_split"),
        },
        "extra": {k: old[k] for k in ("imported_from",) if k in old},
    }


def plain_data(value: Any) -> Any:
    """Plain data (dict/list/str/int/float/bool/None), tuples as lists, anything else as str."""
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# --- reading --------------------------------------------------------------------------------


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], CheckpointMeta]:
    """The raw checkpoint (read with ``weights_only=True``) and its checked metadata."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    verify_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path}: cannot be read as a PyTorch checkpoint ({err})"
        ) from err
    if not isinstance(ckpt, dict) or META_KEY not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(
            f"checkpoint {path}: not an ssgrl checkpoint (no 'ssgrl' block); for the authors' "
            "released .pth.tar files use `ssgrl import-official`"
        )
    return ckpt, CheckpointMeta.from_dict(ckpt[META_KEY], source=f"checkpoint {path}")


def network_skeleton(meta: CheckpointMeta) -> Network:
    """The network ``meta`` describes, with placeholder weights, graph and embeddings."""
    dim = meta.embeddings.dim if meta.embeddings is not None else None
    return build_model(meta.model, meta.num_classes, embed_dim=dim)


def network_state(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's tensors of a checkpoint's state dict (``net.`` prefix removed)."""
    return {
        k.removeprefix(STATE_PREFIX): v for k, v in state_dict.items() if k.startswith(STATE_PREFIX)
    }


class Model(nn.Module):
    """A network with its checkpoint metadata: what ``ssgrl.load_model`` returns.

    ``model(x)`` with x a normalised (B, 3, H, W) float tensor gives logits (B, C);
    ``class_names``, ``preprocessing`` and ``thresholds`` come from the checkpoint.
    """

    def __init__(self, net: Network, meta: CheckpointMeta) -> None:
        super().__init__()
        if net.num_classes != meta.num_classes:
            raise CheckpointError(
                f"the network has {net.num_classes} outputs but the metadata {meta.num_classes} "
                "class names"
            )
        self.net = net
        self.meta = meta

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.class_names)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.meta.preprocessing

    @property
    def thresholds(self) -> Thresholds | None:
        return self.meta.thresholds

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)  # (B, C) logits

    def forward_with_attention(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(self.net, SSGRL):
            raise ValueError(
                f"a {type(self.net).__name__} model has no per-class attention; explain needs SSGRL"
            )
        return self.net.forward_with_attention(images)  # (B, C), (B, C, h, w)


def load_model(path: str | Path) -> Model:
    """The model stored in an ssgrl checkpoint, in eval mode on the CPU."""
    ckpt, meta = read_checkpoint(path)
    net = network_skeleton(meta)
    result = net.load_state_dict(network_state(ckpt["state_dict"]), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"checkpoint {path}: weights do not fit its model config; missing "
            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    return Model(net, meta).eval()


# --- writing --------------------------------------------------------------------------------


def attach_meta(checkpoint: dict[str, Any], meta: CheckpointMeta) -> None:
    """Put ``meta`` into a checkpoint dict (the Trainer's, in ``on_save_checkpoint``)."""
    meta.check()
    checkpoint[META_KEY] = meta.to_dict()


def write_checkpoint(
    net: nn.Module, meta: CheckpointMeta, path: str | Path, overwrite: bool = False
) -> Path:
    """A checkpoint for a network built outside the Trainer (e.g. imported weights): atomic
    (temporary file, fsync, rename), and it never replaces a file unless ``overwrite``."""
    import lightning

    data: dict[str, Any] = {
        "state_dict": {STATE_PREFIX + k: v for k, v in net.state_dict().items()},
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
    }
    attach_meta(data, meta)
    return save_atomically(data, path, overwrite=overwrite)


def save_atomically(data: dict[str, Any], path: str | Path, overwrite: bool = False) -> Path:
    """``torch.save`` into ``path`` so that no reader ever sees a half-written file: a temporary
    file in the same folder, fsync, then rename. Without ``overwrite`` an existing file is never
    replaced, also one that appears meanwhile (the finished file is hard-linked into place).

    The sidecar ``NAME.sha256`` records the file's sha256. While a file is replaced the sidecar
    lists the new and the old digest (new first), and only the new one once the rename is done,
    so whenever the process stops, the file at ``path`` (old or new) verifies. An error (e.g. a
    full disk) leaves the previous file and its sidecar as they were."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another path or pass overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _chmod_new(f.fileno())
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        digest = sha256_file(tmp)
        if overwrite:
            # the old digest stays listed until the new file is in place
            try:
                previous = _recorded_digests(path) if path.exists() else []
            except CheckpointError:  # a broken sidecar: the old file no longer verifies anyway
                previous = []
            _write_sidecar(path, [digest, *(d for d in previous if d != digest)])
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"{path} exists; choose another path") from None
            except OSError:  # no hard links on this file system
                if path.exists():
                    raise FileExistsError(f"{path} exists; choose another path") from None
                os.replace(tmp, path)
        _fsync_dir(path.parent)
        _write_sidecar(path, [digest])
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    return path


# --- integrity: the sha256 sidecar ------------------------------------------------------------

CHECKSUM_SUFFIX = ".sha256"


def checksum_path(path: str | Path) -> Path:
    """The sidecar holding ``path``'s sha256: ``NAME.sha256`` next to it."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def _recorded_digests(path: Path) -> list[str]:
    """The digests the sidecar of ``path`` accepts ([] without a sidecar); CheckpointError if
    the sidecar is unreadable."""
    sidecar = checksum_path(path)
    try:
        text = sidecar.read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"checkpoint {path}: its checksum file {sidecar} is unreadable ({err})"
        ) from None
    digests = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields[0]) != 64 or any(c not in "0123456789abcdef" for c in fields[0]):
            raise CheckpointError(
                f"checkpoint {path}: its checksum file {sidecar} is malformed ({line[:80]!r})"
            )
        digests.append(fields[0])
    if not digests:
        raise CheckpointError(f"checkpoint {path}: its checksum file {sidecar} is empty")
    return digests


def _write_sidecar(path: Path, digests: list[str]) -> None:
    """``sha256sum`` lines for ``path``, written atomically (temporary file, fsync, rename)."""
    sidecar = checksum_path(path)
    fd, tmp = tempfile.mkstemp(prefix=sidecar.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            _chmod_new(f.fileno())
            f.write("".join(f"{d}  {path.name}\n" for d in digests))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, sidecar)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _chmod_new(fd: int) -> None:
    """Give a temporary file the mode ``open()`` gives a new file (0o666 less the umask), not
    mkstemp's 0o600."""
    umask = os.umask(0o022)
    os.umask(umask)
    with contextlib.suppress(AttributeError, OSError):  # no fchmod on this platform
        os.fchmod(fd, 0o666 & ~umask)


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform allows)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def verify_checkpoint(path: str | Path) -> str | None:
    """Check ``path`` against its ``NAME.sha256`` sidecar: its digest, or None when there is no
    sidecar (a file not written by ssgrl: read unverified). CheckpointError, naming the file, when
    it does not match (truncated, or altered after it was written)."""
    path = Path(path)
    accepted = _recorded_digests(path)
    if not accepted:
        return None
    actual = sha256_file(path)
    if actual not in accepted:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its sha256 ({actual[:16]}...) differs from the one "
            f"recorded in {checksum_path(path).name} when it was written ({accepted[0][:16]}...); "
            f"the file was truncated or altered ({path.stat().st_size} bytes now). Use another "
            "checkpoint (`ssgrl fit --run_dir RUN --ckpt_path last` resumes from the newest "
            "intact one)"
        )
    return actual


def remove_checkpoint(path: str | Path) -> None:
    """Delete a checkpoint and its sidecar."""
    for p in (Path(path), checksum_path(path)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


__all__ = [
    "FORMAT_VERSION",
    "STATE_PREFIX",
    "CheckpointError",
    "CheckpointMeta",
    "EmbeddingInfo",
    "Model",
    "Thresholds",
    "attach_meta",
    "checksum_path",
    "load_model",
    "network_skeleton",
    "network_state",
    "package_version",
    "plain_data",
    "read_checkpoint",
    "remove_checkpoint",
    "save_atomically",
    "verify_checkpoint",
    "write_checkpoint",
]
