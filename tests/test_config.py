"""Config parsing: every shipped recipe is valid; overrides are typed; round trip through TOML."""

from pathlib import Path

import pytest

from recursa import config
from recursa.errors import RecursaError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_recipe_parses(path):
    cfg = config.load(path)
    assert cfg.train.data and cfg.train.out


def test_overrides_are_typed_and_round_trip(tmp_path):
    cfg = config.load(CONFIGS[0], ["train.lr=3e-4", "model.mlp_t=false", 'train.out="x/y"', "train.loggers=[]"])
    assert cfg.train.lr == 3e-4 and cfg.model.mlp_t is False and cfg.train.out == "x/y"
    p = tmp_path / "c.toml"
    p.write_text(config.to_toml(cfg))
    assert config.load(p) == cfg


def test_integers_are_accepted_for_floats_but_not_the_reverse(tmp_path):
    assert config.from_dict({"train": {"lr": 1}}).train.lr == 1.0
    with pytest.raises(RecursaError, match="train.steps: expected an integer"):
        config.from_dict({"train": {"steps": 1.5}})
    with pytest.raises(RecursaError, match=r"30 // 4 = 7 \(the head size\) must be even"):
        config.from_dict({"model": {"hidden_size": 30, "num_heads": 4}})
    assert config.from_dict({"model": {"hidden_size": 512, "num_heads": 12}}).model.num_heads == 12  # official baseline
    p = tmp_path / "v.toml"
    p.write_text("version = 9\n")
    with pytest.raises(RecursaError, match="config version 9 is not supported"):
        config.load(p)
