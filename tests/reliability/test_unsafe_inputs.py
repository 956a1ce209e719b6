"""Files that would run code or blow up memory are refused by every loader: a checkpoint whose
unpickling would run a command, XML entity-expansion bombs, and the package itself never calls
``torch.load`` without ``weights_only=True``."""

from __future__ import annotations

import ast
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssgrl.checkpoint import CheckpointError, load_model, read_checkpoint
from ssgrl.cli import main
from ssgrl.data.labelspace import DatasetFormatError
from ssgrl.data.voc import parse_voc_xml
from ssgrl.engine.official import OfficialImportError, read_official_checkpoint
from ssgrl.engine.pretrained import read_state_dict

SRC = Path(__file__).resolve().parents[2] / "src" / "ssgrl"
TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


class _Payload:
    """Unpickling this calls ``os.system`` (writes a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.ckpt"
    torch.save(
        {"state_dict": {"net.x": torch.zeros(1)}, "ssgrl": _Payload(marker), "epoch": 0}, path
    )
    return path, marker


def test_every_checkpoint_loader_refuses_code(
    evil: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, marker = evil
    with pytest.raises(CheckpointError, match=str(path)):
        read_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_model(path)
    with pytest.raises(Exception, match=r"(?i)weights only|unpickl|global"):
        read_state_dict(path)  # model.pretrained: PATH
    with pytest.raises(OfficialImportError):
        read_official_checkpoint(path)  # ssgrl import-official
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    assert main(["predict", "--checkpoint", str(path), str(image)]) == 2
    assert (
        main(["explain", "--checkpoint", str(path), str(image), "--out", str(tmp_path / "e.png")])
        == 2
    )
    assert not marker.exists(), "unpickling ran code"


@pytest.mark.slow
def test_resume_and_test_refuse_code(
    evil: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resuming (``fit --ckpt_path``) and testing a checkpoint load it weights-only: refused
    with one message naming the file, exit 2, and the code never runs."""
    path, marker = evil
    quiet = ["--trainer.enable_progress_bar", "false"]
    for command in ("fit", "test"):
        run = tmp_path / command
        args = [command, "--config", str(TINY), "--run_dir", str(run), "--ckpt_path", str(path)]
        capsys.readouterr()
        assert main([*args, *quiet]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and re.search("(?i)weights.only|unpickl|global|not an ssgrl", err)
    assert not marker.exists(), "unpickling ran code"


def test_package_never_loads_pickles_unsafely() -> None:
    """Every torch.load in the package passes weights_only=True; every np.load
    allow_pickle=False."""
    calls = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value
            name = f"{getattr(owner, 'id', '')}.{node.func.attr}"
            if name not in ("torch.load", "np.load"):
                continue
            calls.append(f"{path.name}:{node.lineno}")
            want = ("weights_only", True) if name == "torch.load" else ("allow_pickle", False)
            given = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
            assert given.get(want[0]) is want[1], f"{path}:{node.lineno}: {name} without {want}"
    assert len(calls) >= 4, calls  # the scan does see the loaders


def _billion_laughs(levels: int = 9) -> bytes:
    ents = '<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, levels + 1)
    )
    return (
        f'<?xml version="1.0"?><!DOCTYPE annotation [{ents}]>'
        f"<annotation><object><name>&l{levels};</name></object></annotation>"
    ).encode()


def _quadratic_blowup() -> bytes:
    big = "x" * 50_000
    return (
        f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "{big}">]>'
        f"<annotation><object><name>{'&b;' * 50_000}</name></object></annotation>"
    ).encode()


def _external_entity(tmp_path: Path) -> bytes:
    secret = tmp_path / "secret.txt"
    secret.write_text("person")
    return (
        f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file://{secret}">]>'
        "<annotation><object><name>&e;</name></object></annotation>"
    ).encode()


@pytest.mark.parametrize("kind", ["billion_laughs", "quadratic", "external"])
def test_xml_bombs_are_refused_quickly(tmp_path: Path, kind: str) -> None:
    data = {
        "billion_laughs": _billion_laughs,
        "quadratic": _quadratic_blowup,
        "external": lambda: _external_entity(tmp_path),
    }[kind]()
    path = tmp_path / "000001.xml"
    start = time.perf_counter()
    with pytest.raises(DatasetFormatError, match=r"000001\.xml: declares a document type"):
        parse_voc_xml(path, data)
    assert time.perf_counter() - start < 1.0
