"""model.forward_dtype = "auto": the measured choice, recorded where the run's dtype is read
(config.toml, checkpoints), resumable, refused where no training measures it."""

import pytest
import torch

from recursa import config
from recursa.config import ModelConfig
from recursa.errors import RecursaError
from recursa.inference.checkpoint import load_checkpoint
from recursa.models import DataSpec, build_model
from recursa.training import autodtype
from recursa.training.distributed import Dist
from recursa.training.trainer import fit

from .conftest import tiny_config


def _auto(cfg):
    return config.replace(cfg, model={"forward_dtype": "auto"})


@pytest.mark.parametrize("f32,b16,want", [(0.30, 0.10, "bfloat16"), (0.12, 0.10, "bfloat16"),
                                          (0.119, 0.10, "float32"), (0.10, 0.30, "float32")])
def test_bfloat16_only_where_its_step_is_measured_faster(tiny_data, tmp_path, f32, b16, want):
    cfg = _auto(tiny_config(tiny_data, tmp_path / "run"))
    said = []
    timer = lambda m, spec, b, dev, dtype, loss: {"float32": f32, "bfloat16": b16}[dtype]  # noqa: E731
    out = autodtype.resolve(cfg, DataSpec(6, 16, 1), torch.device("cpu"), Dist(), said.append, timer)
    assert out.model.forward_dtype == want and len(said) == 1 and want in said[0] and f"{f32 / b16:.2f}x" in said[0]
    assert autodtype.resolve(tiny_config(tiny_data, tmp_path / "r2"), DataSpec(6, 16, 1), torch.device("cpu"),
                             Dist(), said.append, timer).model.forward_dtype == "float32" and len(said) == 1


def test_the_step_timer_runs_the_model_in_each_dtype():
    cfg = ModelConfig(hidden_size=32, num_heads=2, L_layers=1, H_cycles=1, L_cycles=1, halt_max_steps=2,
                      mlp_t=True, pos_encodings="none", puzzle_emb_len=1)
    for dtype in ("float32", "bfloat16"):
        s = autodtype.step_seconds(cfg, DataSpec(6, 16, 1), 4, torch.device("cpu"), dtype, steps=1)
        assert 0 < s < 60


def test_an_auto_run_records_its_choice_and_resumes(tiny_data, tmp_path, monkeypatch):
    """The run's config.toml and checkpoints name the chosen dtype (never "auto"), so evaluation
    computes as the run trained; resuming with the recipe's "auto" gets the same choice here."""
    monkeypatch.setattr(autodtype, "step_seconds", lambda m, spec, b, dev, dtype, loss: 0.1 if dtype == "bfloat16" else 0.5)
    run = tmp_path / "run"
    said = []
    cfg = _auto(tiny_config(tiny_data, run, steps=6, checkpoint_interval=3))
    fit(config.replace(cfg, train={"steps": 3}), progress=False, log=said.append)
    assert any('forward_dtype = "auto": bfloat16' in s for s in said)
    assert 'forward_dtype = "bfloat16"' in (run / "config.toml").read_text()
    assert load_checkpoint(run).cfg.model.forward_dtype == "bfloat16"
    monkeypatch.setattr(autodtype, "step_seconds", lambda m, spec, b, dev, dtype, loss: 0.5 if dtype == "bfloat16" else 0.1)
    with pytest.raises(RecursaError, match='trained with model.forward_dtype = "bfloat16", this one would compute in '
                                           'float32 .* resume with --set model.forward_dtype=bfloat16'):
        fit(cfg, resume=True, progress=False, log=said.append)  # a machine where float32 is faster
    monkeypatch.setattr(autodtype, "step_seconds", lambda m, spec, b, dev, dtype, loss: 0.1 if dtype == "bfloat16" else 0.5)
    fit(cfg, resume=True, progress=False, log=said.append)
    assert load_checkpoint(run).meta["step"] == 6 and load_checkpoint(run).cfg.model.forward_dtype == "bfloat16"


def test_a_model_is_not_built_in_auto():
    with pytest.raises(RecursaError, match='forward_dtype = "auto" is chosen when training starts'):
        build_model(ModelConfig(hidden_size=32, num_heads=2, forward_dtype="auto"), DataSpec(6, 16, 1))
