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


@pytest.mark.parametrize("model,train,key,other", [
    ({"conv_mixer": 5}, {}, "model.num_heads", "model.conv_mixer = 5"),
    ({"conv_mixer": 5}, {}, "model.mlp_t", "model.conv_mixer = 5"),
    ({"conv_mixer": 5, "pos_encodings": "rope"}, {}, "model.pos_encodings", "model.conv_mixer = 5"),
    ({"conv_mixer": 3, "rope_theta": 500.0}, {}, "model.rope_theta", "model.conv_mixer = 3"),
    ({"group_mixer": True}, {}, "model.num_heads", "model.group_mixer = true"),
    ({"group_mixer": True}, {}, "model.mlp_t", "model.group_mixer = true"),
    ({"group_mixer": True, "pos_encodings": "rope"}, {}, "model.pos_encodings", "model.group_mixer = true"),
    ({"mlp_t": True, "num_heads": 4}, {}, "model.num_heads", "model.mlp_t = true"),
    ({"mlp_t": True, "pos_encodings": "rope"}, {}, "model.pos_encodings", "model.mlp_t = true"),
    ({"pos_encodings": "learned", "rope_theta": 500.0}, {}, "model.rope_theta", 'model.pos_encodings = "learned"'),
    ({"conv_dtype": "forward"}, {}, "model.conv_dtype", "model.conv_swiglu = 0"),
    ({}, {"ema": False, "ema_rate": 0.99}, "train.ema_rate", "train.ema = false"),
    ({}, {"max_nonfinite_skips": 5}, "train.max_nonfinite_skips", 'train.on_nonfinite = "stop"'),
])
def test_a_setting_without_effect_is_an_error_naming_both(tmp_path, model, train, key, other):
    p = tmp_path / "r.toml"
    lines = ["version = 1", "[model]"] + [f"{k} = {config.toml_value(v)}" for k, v in model.items()]
    lines += ["[train]", 'data = "d"', 'out = "o"'] + [f"{k} = {config.toml_value(v)}" for k, v in train.items()]
    if key.split(".")[1] not in {**model, **train}:  # the setting under test comes from --set
        overrides = [f"{key}={config.toml_value(getattr(config.from_dict({}).model, key.split('.')[1]))}"]
    else:
        overrides = []
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecursaError) as e:
        config.load(p, overrides)
    msg = str(e.value)
    assert msg.startswith(f"{p}: {key} = ") and f"has no effect with {other}" in msg and "\n" not in msg, msg
    # the same settings without the key load, and written back they load again
    name = key.split(".")[1]
    p.write_text("\n".join(x for x in lines if not x.startswith(f"{name} =")) + "\n")
    cfg = config.load(p)
    assert key in config.ineffective(cfg)
    q = tmp_path / "back.toml"
    q.write_text(config.to_toml(cfg))
    assert f"\n{name} =" not in q.read_text() and config.load(q) == cfg


def test_the_heads_constraints_bind_only_where_there_is_attention(tmp_path):
    """Without attention (the MLP token mixer, a conv mixer) num_heads is moot: it neither breaks a
    width that does not suit 8 heads nor may be given; with attention it is checked."""
    assert config.from_dict({"model": {"hidden_size": 6, "mlp_t": True}}).model.hidden_size == 6
    assert config.from_dict({"model": {"hidden_size": 40, "conv_mixer": 3}}).model.conv_mixer == 3
    with pytest.raises(RecursaError, match="model.num_heads=8 must be <= model.hidden_size=6"):
        config.from_dict({"model": {"hidden_size": 6}})
    cfg = config.from_dict({"model": {"hidden_size": 40, "num_heads": 4, "conv_mixer": 3}})
    p = tmp_path / "c.toml"
    p.write_text(config.to_toml(cfg))  # written without num_heads: loads, the same model
    assert config.ineffective(config.load(p)) == config.ineffective(cfg)


def test_the_same_keys_with_effect_are_accepted():
    cfg = config.from_dict({"model": {"conv_swiglu": 3, "conv_2d": True, "conv_dtype": "forward", "num_heads": 4,
                                      "hidden_size": 64}, "train": {"ema": True, "ema_rate": 0.99,
                                                                    "on_nonfinite": "skip_step", "max_nonfinite_skips": 3}})
    assert not config.ineffective(cfg)


def test_an_empty_override_restores_the_default(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('version = 1\n[model]\nmlp_t = true\nhidden_size = 64\n[train]\ndata = "d"\nout = "o"\n')
    with pytest.raises(RecursaError, match="model.mlp_t = true has no effect with model.conv_mixer = 3"):
        config.load(p, ["model.conv_mixer=3"])
    cfg = config.load(p, ["model.conv_mixer=3", "model.mlp_t="])
    assert cfg.model.conv_mixer == 3 and cfg.model.mlp_t is False and cfg.model.hidden_size == 64
    with pytest.raises(RecursaError, match="unknown key 'mlp_tt' in \\[model\\]"):
        config.load(p, ["model.mlp_tt="])
