"""The named architectures are reachable from the command line: ``--model.net PRESET``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssgrl.engine.build import resolve_model_config
from ssgrl.engine.cli import parse_config
from ssgrl.engine.module import SSGRLModule
from ssgrl.models.factory import MODEL_CONFIGS, ModelConfig

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


def test_preset_by_name_on_the_command_line() -> None:
    config = parse_config(TINY, "--model.net", "ssgrl-resnet101")
    assert config.model.net == "ssgrl-resnet101"
    module = SSGRLModule(net=config.model.net)
    assert module.model_config == MODEL_CONFIGS["ssgrl-resnet101"]
    assert module.hparams["net"] == MODEL_CONFIGS["ssgrl-resnet101"].to_dict()  # plain data


@pytest.mark.parametrize("name", sorted(MODEL_CONFIGS))
def test_every_preset_resolves(name: str) -> None:
    module = SSGRLModule(net=name)
    assert module.model_config == MODEL_CONFIGS[name]


def test_mapping_fields_and_errors() -> None:
    config = parse_config(TINY, "--model.net.d1", "32")
    assert resolve_model_config(config.model.net).d1 == 32
    assert resolve_model_config({"arch": "baseline"}) == ModelConfig(arch="baseline")
    with pytest.raises(ValueError, match=r"unknown preset 'ssgrl-resnet50'.*ssgrl-lite0"):
        resolve_model_config("ssgrl-resnet50")
    with pytest.raises(ValueError, match="depth"):
        parse_config(TINY, "--model.net.depth", "3")
