"""Load a checkpoint once, predict many images: the code behind ``ssgrl predict`` and
``ssgrl explain``, usable from Python."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssgrl.checkpoint import Model, load_model
from ssgrl.data.decode import IMAGE_EXTENSIONS, ImageDecodeError, decode_image, open_image
from ssgrl.data.transforms import Preprocessing, eval_geometry, eval_transform

LIST_EXTENSIONS = (".txt", ".lst", ".list")


@dataclass
class Prediction:
    """One input: its probabilities (C,), or the error that stopped it."""

    image: str
    probabilities: np.ndarray | None = None
    error: str | None = None


def collect_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files as given, folders searched recursively for images (sorted), and text files
    (.txt/.lst/.list) read as one path per line, relative to the list's folder."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                )
            )
        elif path.suffix.lower() in LIST_EXTENSIONS and path.is_file():
            for line in path.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    entry = Path(line)
                    paths.append(entry if entry.is_absolute() else path.parent / entry)
        else:
            paths.append(path)  # a missing or unreadable file becomes an error line later
    return paths


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Predictor:
    """``Predictor("best.ckpt").predict_paths(paths)`` yields one ``Prediction`` per path."""

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        model: Model | None = None,
        device: str = "cpu",
    ) -> None:
        if (checkpoint is None) == (model is None):
            raise ValueError("give exactly one of checkpoint or model")
        net = model if model is not None else load_model(checkpoint)  # type: ignore[arg-type]
        self.device = _device(device)
        self.model = net.eval().to(self.device)
        self.class_names: list[str] = net.class_names
        self.preprocessing: Preprocessing = net.preprocessing
        self.transform = eval_transform(self.preprocessing)
        self.geometry = eval_geometry(self.preprocessing)

    def view(self, image: Image.Image) -> Image.Image:
        """The image as the network sees it (resized and centre-cropped, not normalised)."""
        return self.geometry(decode_image(image))

    @torch.inference_mode()
    def predict_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Probabilities (B, C) of decoded images."""
        if not images:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        x = torch.stack([self.transform(decode_image(img)) for img in images]).to(self.device)
        return torch.sigmoid(self.model(x)).float().cpu().numpy()

    def predict_paths(self, paths: Iterable[Path], batch_size: int = 16) -> Iterator[Prediction]:
        """Decode and predict in batches, in input order; an unreadable file gives an error
        ``Prediction`` and the others go on."""
        pending: list[tuple[str, Image.Image | str]] = []  # (name, image or error message)
        num_images = 0
        for path in paths:
            try:
                pending.append((str(path), open_image(path)))
                num_images += 1
            except ImageDecodeError as err:
                pending.append((str(path), str(err)))
            if num_images == batch_size:
                yield from self._flush(pending)
                pending, num_images = [], 0
        yield from self._flush(pending)

    def _flush(self, pending: list[tuple[str, Image.Image | str]]) -> Iterator[Prediction]:
        images = [item for _, item in pending if isinstance(item, Image.Image)]
        probs = iter(self.predict_images(images))
        for name, item in pending:
            if isinstance(item, str):
                yield Prediction(image=name, error=item)
            else:
                yield Prediction(image=name, probabilities=next(probs))

    @torch.inference_mode()
    def attention(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (B, C) and attention maps (B, C, h, w) of decoded images."""
        x = torch.stack([self.transform(decode_image(img)) for img in images]).to(self.device)
        logits, attention = self.model.forward_with_attention(x)
        return torch.sigmoid(logits).float().cpu().numpy(), attention.float().cpu().numpy()

    def explain(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray, Image.Image]:
        """Probabilities (C,), attention maps (C, h, w) and the image as the model saw it."""
        probs, attention = self.attention([image])
        return probs[0], attention[0], self.view(image)


def select_labels(
    probabilities: np.ndarray, class_names: Sequence[str], threshold: float, top_k: int | None
) -> list[str]:
    """Classes with probability >= threshold, best first; at most ``top_k`` of them."""
    order = np.argsort(-probabilities, kind="stable")
    chosen = [int(i) for i in order if probabilities[i] >= threshold]
    if top_k is not None:
        chosen = chosen[:top_k]
    return [class_names[i] for i in chosen]
