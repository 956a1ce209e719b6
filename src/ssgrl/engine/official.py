"""``ssgrl import-official``: convert the SSGRL authors' released checkpoint into an ssgrl one.

The authors' files (``{'epoch', 'state_dict', 'best_mAP'}``, saved from Python 2 / torch 0.4)
hold the weights only; the label graph (``prob.npy``, C x C) and the word vectors
(``vectors.npy``, C x 300) are side files and the class names are implicit. The import renames
their keys onto ``SSGRL``, builds the equivalent model (ResNet-101, 2x2 average pooling, d1 = d2
= 1024, T = 3 GGNN steps, their reset gate that reads U_z), stores the graph and word vectors
inside the new checkpoint and records where everything came from, so that ``ssgrl.load_model``
alone reproduces their predictions on the CPU.

Key mapping (theirs -> ours): ``resnet_101.*`` -> ``backbone.body.*`` (torchvision names, which
timm's ``resnet101`` features share), ``word_semantic.fc_1/fc_2/fc_3/fc_a`` -> ``decoupling.U/V/
P/f_a``, ``graph_net.fc_eq3_w/u, fc_eq4_w/u, fc_eq5_w/u`` -> ``graph.W_z/U_z, W_r/U_r, W/U``
(which the GGNN stacks into its fused ``W_a`` = [W_z; W_r; W] and ``U_zr`` = [U_z; U_r]),
``fc_output`` -> ``fc_out``, ``classifiers.weight/bias`` -> ``classifier_weight/bias``.
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ssgrl.checkpoint import CheckpointMeta, EmbeddingInfo, write_checkpoint
from ssgrl.data.transforms import Preprocessing
from ssgrl.data.voc import VOC_CLASSES
from ssgrl.graph.cooccurrence import matrix_sha256
from ssgrl.models.factory import ModelConfig, build_model
from ssgrl.models.ggnn import unfused_state_dict
from ssgrl.models.ssgrl import SSGRL
from ssgrl.provenance import sha256_file

PROG = "ssgrl import-official"
SELECTED_ON = "authors' checkpoint (their code selects on the test split)"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # their utils/transforms.py
IMAGENET_STD = (0.229, 0.224, 0.225)
AUTHORS_TIME_STEP = 3  # their main.py: SSGRL(..., time_step=3)
ResetGate = Literal["authors", "paper"]

# The 80 MS-COCO categories in ascending category-id order (ids 1..90 with gaps).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

# (their key prefix, our key prefix); a prefix ending in "." renames a whole module.
RENAMES: tuple[tuple[str, str], ...] = (
    ("resnet_101.", "backbone.body."),
    ("word_semantic.fc_1.", "decoupling.U."),  # U: N -> d1, no bias
    ("word_semantic.fc_2.", "decoupling.V."),  # V: d_s -> d1, no bias
    ("word_semantic.fc_3.", "decoupling.P."),  # P: d1 -> d2, bias b
    ("word_semantic.fc_a.", "decoupling.f_a."),  # f_a: d2 -> 1
    ("graph_net.fc_eq3_w.", "graph.W_z."),
    ("graph_net.fc_eq3_u.", "graph.U_z."),
    ("graph_net.fc_eq4_w.", "graph.W_r."),
    ("graph_net.fc_eq4_u.", "graph.U_r."),
    ("graph_net.fc_eq5_w.", "graph.W."),
    ("graph_net.fc_eq5_u.", "graph.U."),
    ("fc_output.", "fc_out."),
    ("classifiers.weight", "classifier_weight"),  # Element_Wise_Layer: (C, N)
    ("classifiers.bias", "classifier_bias"),  # (C,)
)


class OfficialImportError(ValueError):
    """The authors' files cannot be converted; the message says which file and why."""


# --- reading ------------------------------------------------------------------------------------


def _numpy_scalar_globals() -> list[Any]:
    """The constructors of a pickled numpy scalar (their ``best_mAP`` is ``np.float64``), under
    both the numpy 1 and numpy 2 module names. Data only: nothing here runs user code."""
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
    scalar = multiarray.scalar
    dtype_classes = {type(np.dtype(code)) for code in "?bhilqBHILQefd"}  # BUILD sets their state
    return [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        (np.dtype, "numpy.dtype"),
        *sorted(dtype_classes, key=str),
    ]


def _unsupported_global(message: str) -> str:
    found = re.search(r"GLOBAL ([\w.]+)", message)
    return found.group(1) if found else message.strip().splitlines()[-1][:200]


def load_weights_only(path: Path) -> Any:
    """``torch.load`` that unpickles tensors, containers, numbers and numpy scalars only, and
    reads Python 2 files (their byte strings as latin1, as numpy's own pickles need)."""
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_numpy_scalar_globals()):
            # torch warns that pickle arguments are ignored with weights_only, but its weights-only
            # unpickler does take `encoding` (the default, utf-8, fails on a packed float64)
            warnings.filterwarnings("ignore", message="pickle_load_args only works")
            return torch.load(path, map_location="cpu", weights_only=True, encoding="latin1")
    except pickle.UnpicklingError as err:
        raise OfficialImportError(
            f"--checkpoint {path}: the file holds pickled Python objects besides tensors and "
            f"numbers (first refused: {_unsupported_global(str(err))}); they are not loaded, "
            "because unpickling them can run arbitrary code. If you trust the file, re-save only "
            "the weights in an environment that can read it, e.g. `c = torch.load(FILE, "
            "weights_only=False); torch.save({'state_dict': c['state_dict']}, 'weights.pth')`, "
            "and import that file"
        ) from None
    except Exception as err:
        raise OfficialImportError(
            f"--checkpoint {path}: cannot be read as a PyTorch file ({type(err).__name__}: {err})"
        ) from None


def read_official_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The authors' state dict (``module.`` prefixes removed) and ``{'format', 'epoch',
    'best_mAP'}``. A plain state dict is accepted too."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint {path}: no such file")
    data = load_weights_only(path)
    info: dict[str, Any] = {"format": "plain state dict", "epoch": None, "best_mAP": None}
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        info["format"] = "{'epoch', 'state_dict', 'best_mAP'}"
        if isinstance(data.get("epoch"), int | np.integer):
            info["epoch"] = int(data["epoch"])
        if isinstance(data.get("best_mAP"), float | int | np.floating | np.integer):
            info["best_mAP"] = float(data["best_mAP"])
        data = data["state_dict"]
    if not isinstance(data, dict) or not data:
        raise OfficialImportError(
            f"--checkpoint {path}: expected the authors' {{'epoch', 'state_dict', 'best_mAP'}} "
            f"or a state dict (name -> tensor), got {type(data).__name__}"
            + (" (empty)" if isinstance(data, dict) else "")
        )
    not_tensors = [str(k) for k, v in data.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise OfficialImportError(
            f"--checkpoint {path}: the state dict has {len(not_tensors)} entries that are not "
            f"tensors (first: {not_tensors[:5]})"
        )
    state = {str(k).removeprefix("module."): v for k, v in data.items()}  # DataParallel
    return state, info


def load_matrix(path: str | Path, option: str) -> np.ndarray:
    """A 2-D finite float32 array from a ``.npy`` file (no pickled objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option} {path}: no such file")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:
        raise OfficialImportError(f"{option} {path}: not a numeric .npy array ({err})") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise OfficialImportError(
            f"{option} {path}: expected a 2-D numeric array, got shape {array.shape} "
            f"dtype {array.dtype}"
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise OfficialImportError(
            f"{option} {path}: non-finite value at [{bad[0]}, {bad[1]}]; expected finite floats"
        )
    return array


def class_names_for(spec: str) -> list[str]:
    """``voc`` (METHOD.md order), ``coco`` (category-id order) or a file with one name a line."""
    if spec == "voc":
        return list(VOC_CLASSES)
    if spec == "coco":
        return list(COCO_CLASSES)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"--classes {spec}: expected 'voc', 'coco' or a text file with one class name a line"
        )
    names: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name in seen:
            raise OfficialImportError(
                f"--classes {path}, line {lineno}: {name!r} repeats line {seen[name]}; "
                "expected each class once"
            )
        seen[name] = lineno
        names.append(name)
    if not names:
        raise OfficialImportError(f"--classes {path}: no class names (expected one a line)")
    return names


# --- converting ---------------------------------------------------------------------------------


def ours(key: str) -> str | None:
    """Our name for one of the authors' keys, or None if it is not part of their layout."""
    for their_prefix, our_prefix in RENAMES:
        if key == their_prefix or (their_prefix.endswith(".") and key.startswith(their_prefix)):
            return our_prefix + key[len(their_prefix) :]
    return None


def theirs(key: str) -> str:
    """The authors' name for one of our keys (for messages)."""
    for their_prefix, our_prefix in RENAMES:
        if key == our_prefix or (our_prefix.endswith(".") and key.startswith(our_prefix)):
            return their_prefix + key[len(our_prefix) :]
    return key


def _shape(t: torch.Tensor | np.ndarray) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def _dim(state: dict[str, torch.Tensor], key: str, axis: int, default: int) -> int:
    t = state.get(key)
    return int(t.shape[axis]) if t is not None and t.ndim == 2 else default


def official_config(d1: int, d2: int, reset_gate: ResetGate = "authors") -> ModelConfig:
    """The authors' network: ResNet-101 + 2x2 pooling, layer4 and head trained, T = 3."""
    return ModelConfig(
        arch="ssgrl",
        backbone="resnet101",
        pool="avg2x2",
        train_stages=1,
        d1=d1,
        d2=d2,
        ggnn_steps=AUTHORS_TIME_STEP,
        reset_gate_uses_update_weights=reset_gate == "authors",
    )


def check_class_counts(
    state: dict[str, torch.Tensor],
    adjacency: np.ndarray,
    embeddings: np.ndarray,
    class_names: Sequence[str],
    sources: dict[str, str],
) -> int:
    """C, after checking that the class list, the classifier, prob.npy and vectors.npy agree."""
    counts: dict[str, tuple[int, str]] = {
        sources["classes"]: (len(class_names), f"{len(class_names)} names"),
        sources["adjacency"]: (adjacency.shape[0], f"shape {_shape(adjacency)}"),
        sources["embeddings"]: (embeddings.shape[0], f"shape {_shape(embeddings)}"),
    }
    for key in ("classifiers.weight", "classifiers.bias"):
        if key in state and state[key].ndim >= 1:
            counts[f"{sources['checkpoint']} {key}"] = (
                int(state[key].shape[0]),
                f"shape {_shape(state[key])}",
            )
    problems = []
    if adjacency.shape[0] != adjacency.shape[1]:
        problems.append(f"{sources['adjacency']} is not square: shape {_shape(adjacency)}")
    if len({c for c, _ in counts.values()}) > 1:
        listing = "; ".join(f"{src}: {c} classes ({what})" for src, (c, what) in counts.items())
        problems.append(f"class counts disagree: {listing}")
    if problems:
        raise OfficialImportError(
            "; ".join(problems) + ". Give the class list, prob.npy and vectors.npy that belong to "
            "this checkpoint (e.g. --classes voc for a 20-class VOC model)"
        )
    return len(class_names)


def convert_official(
    state: dict[str, torch.Tensor],
    adjacency: np.ndarray,
    embeddings: np.ndarray,
    class_names: Sequence[str],
    reset_gate: ResetGate = "authors",
    sources: dict[str, str] | None = None,
) -> SSGRL:
    """The authors' weights (their key names), graph (C, C) and word vectors (C, d_s) as an
    ``SSGRL`` network in eval mode. Raises one error listing every missing, unexpected or
    wrongly shaped tensor."""
    src = {
        "checkpoint": "checkpoint",
        "adjacency": "adjacency",
        "embeddings": "embeddings",
        "classes": "class list",
        **(sources or {}),
    }
    num_classes = check_class_counts(state, adjacency, embeddings, class_names, src)
    # N = 2048 is fixed by ResNet-101; d1, d2 (1024 in their code) are read from fc_1 and fc_3,
    # and every other tensor must then agree with them (shape errors below)
    d1 = _dim(state, "word_semantic.fc_1.weight", 0, 1024)
    d2 = _dim(state, "word_semantic.fc_3.weight", 0, 1024)
    config = official_config(d1, d2, reset_gate)
    net = build_model(
        config, num_classes, torch.from_numpy(adjacency), torch.from_numpy(embeddings)
    )
    if not isinstance(net, SSGRL):  # pragma: no cover - arch is "ssgrl"
        raise TypeError(f"expected an SSGRL network, got {type(net).__name__}")
    # their six gate Linears are ours unfused (the GGNN stacks W_z, W_r, W and U_z, U_r on load)
    expected = unfused_state_dict(net.state_dict(), "graph.")
    problems: list[str] = []
    fc2 = state.get("word_semantic.fc_2.weight")
    if fc2 is not None and fc2.ndim == 2 and fc2.shape[1] != embeddings.shape[1]:
        problems.append(
            f"{src['embeddings']}: expected ({num_classes}, {int(fc2.shape[1])}) word vectors "
            f"(word_semantic.fc_2 takes {int(fc2.shape[1])}-d), got {_shape(embeddings)}"
        )
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        mine = ours(key)
        if mine is None or mine not in expected:
            problems.append(f"unexpected {key}: expected no such tensor, got {_shape(value)}")
        elif _shape(value) != _shape(expected[mine]):
            problems.append(f"{key}: expected {_shape(expected[mine])}, got {_shape(value)}")
        else:
            converted[mine] = value
    converted["graph.adjacency"] = torch.from_numpy(adjacency)
    converted["label_embeddings"] = torch.from_numpy(embeddings)
    for mine, ref in expected.items():
        if mine in converted or (
            mine.endswith(".num_batches_tracked") and theirs(mine) not in state
        ):
            continue  # torch < 0.4.1 saved no BatchNorm step counters; unused in eval mode
        if theirs(mine) not in state:
            problems.append(f"missing {theirs(mine)}: expected {_shape(ref)}, got nothing")
    if len(converted) == 2:  # only prob.npy and vectors.npy: nothing of theirs was recognised
        problems.insert(
            0,
            "no key uses the authors' names (" + ", ".join(p for p, _ in RENAMES[:6]) + " ...); "
            "is this the authors' SSGRL checkpoint?",
        )
    if problems:
        raise OfficialImportError(
            f"{src['checkpoint']}: {len(problems)} problem(s) against the authors' SSGRL layout "
            f"(C = {num_classes}, N = 2048, d1 = {d1}, d2 = {d2}):\n  " + "\n  ".join(problems)
        )
    net.load_state_dict(converted, strict=False)  # every key checked above
    return net.eval()


# --- the command --------------------------------------------------------------------------------


def import_official(
    checkpoint: str | Path,
    adjacency: str | Path,
    embeddings: str | Path,
    classes: str,
    out: str | Path,
    overwrite: bool = False,
    image_size: int = 576,
    resize: int = 640,
    reset_gate: ResetGate = "authors",
) -> Path:
    """Convert the authors' files into the ssgrl checkpoint ``out``; returns its path."""
    ckpt_path, adj_path, emb_path, out = (Path(p) for p in (checkpoint, adjacency, embeddings, out))
    if out.exists() and not overwrite:
        raise FileExistsError(f"--out {out} exists; choose another path or pass --overwrite")
    if out.resolve() in {p.resolve() for p in (ckpt_path, adj_path, emb_path)}:
        raise OfficialImportError(f"--out {out} is one of the input files; choose another path")
    if image_size <= 0 or resize < image_size:
        raise OfficialImportError(
            f"--image-size {image_size} / --resize {resize}: expected 0 < image size <= resize"
        )
    names = class_names_for(classes)
    adj = load_matrix(adj_path, "--adjacency")  # (C, C)
    emb = load_matrix(emb_path, "--embeddings")  # (C, d_s)
    state, info = read_official_checkpoint(ckpt_path)
    sources = {
        "checkpoint": f"--checkpoint {ckpt_path}",
        "adjacency": f"--adjacency {adj_path}",
        "embeddings": f"--embeddings {emb_path}",
        "classes": f"--classes {classes}",
    }
    net = convert_official(state, adj, emb, names, reset_gate, sources)
    meta = CheckpointMeta(
        class_names=names,
        model=official_config(
            net.decoupling.U.out_features, net.decoupling.P.out_features, reset_gate
        ),
        preprocessing=Preprocessing(image_size, resize, IMAGENET_MEAN, IMAGENET_STD, "bilinear"),
        graph={
            "source": "official",
            "file": adj_path.name,
            "file_sha256": sha256_file(adj_path),
            "sha256": matrix_sha256(adj),  # of the float32 matrix, as LabelGraph records it
            "classes": names,
            "split": None,  # the authors' training split; not recorded in their file
            "num_images": None,
            "options": {"a_in": "M", "a_out": "M^T"},
        },
        embeddings=EmbeddingInfo(
            source="official",
            dim=int(emb.shape[1]),
            words=None,
            provenance={
                "file": emb_path.name,
                "file_sha256": sha256_file(emb_path),
                "sha256": matrix_sha256(emb),
            },
        ),
        pretrained=f"official:{ckpt_path.name}",
        selected_on=SELECTED_ON,
        extra={
            "imported_from": {
                "file": ckpt_path.name,
                "sha256": sha256_file(ckpt_path),
                **info,
                "reset_gate": reset_gate,
            }
        },
    )
    return write_checkpoint(net, meta, out, overwrite=overwrite)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Convert the SSGRL authors' released checkpoint (.pth.tar) with its label graph "
        "(prob.npy) and word vectors (vectors.npy) into one self-sufficient ssgrl checkpoint."
    )
    parser.add_argument("--checkpoint", required=True, help="the authors' .pth.tar file")
    parser.add_argument("--adjacency", required=True, help="their C x C graph (prob.npy)")
    parser.add_argument("--embeddings", required=True, help="their C x 300 word vectors (.npy)")
    parser.add_argument(
        "--classes",
        required=True,
        help="'voc' (20 VOC classes), 'coco' (80 COCO categories in id order) or a text file "
        "with one class name a line, in the checkpoint's class order",
    )
    parser.add_argument("--out", required=True, help="the ssgrl checkpoint to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument(
        "--image-size", type=int, default=576, help="evaluation crop side (default 576)"
    )
    parser.add_argument(
        "--resize", type=int, default=640, help="resize side before the crop (default 640)"
    )
    parser.add_argument(
        "--reset-gate",
        choices=("authors", "paper"),
        default="authors",
        help="'authors' (default): the GGNN reset gate reads U_z (fc_eq3_u), as the released "
        "code; 'paper': it reads U_r (fc_eq4_u), as the paper and one later revision of their "
        "ggnn.py",
    )


def run(args: argparse.Namespace) -> int:
    try:
        out = import_official(
            args.checkpoint,
            args.adjacency,
            args.embeddings,
            args.classes,
            args.out,
            overwrite=args.overwrite,
            image_size=args.image_size,
            resize=args.resize,
            reset_gate=args.reset_gate,
        )
    except (OfficialImportError, OSError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
