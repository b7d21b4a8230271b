"""Official checkpoint import through the public path (`recursa import-official`): the three
official fixtures, saved the way the official trainer saves them, reproduce the official
outputs; both key prefixes and bf16 init vectors load; unsafe pickles are refused; mismatches
name every key."""

import json
import os

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from recursa.cli import main
from recursa.data.format import load_split, make_split, write_dataset
from recursa.evaluation.evaluate import evaluate
from recursa.inference.checkpoint import load_checkpoint

from .conftest import data_file, fixture_file
from . import numerics
from .test_models import _batch, check_urm_against_fixture, fixture_steps

NAMES = {"trm_att_rope": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
         "trm_mlp_t": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
         "hrm": "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1"}


def _official_files(tmp_path, case, prefix="_orig_mod.model.", init_dtype=torch.float32, extra_arch=None):
    meta = json.loads(fixture_file(f"official/{case}.json").read_text())
    weights = load_file(str(fixture_file(f"official/{case}.weights.safetensors")))
    sd = {prefix + k: (v.to(init_dtype) if k.endswith(("H_init", "L_init")) else v.float()) for k, v in weights.items()}
    ckpt = tmp_path / "step_1234"
    torch.save(sd, ckpt)
    arch = {k: v for k, v in meta["config"].items() if k not in ("batch_size",)}
    arch.update({"name": NAMES[case], "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"}})
    arch.update(extra_arch or {})
    cfg = tmp_path / "all_config.yaml"
    cfg.write_text(yaml.safe_dump({"arch": arch, "global_batch_size": 768, "lr": 1e-4, "ema": True,
                                   "data_paths": ["data/x"], "project_name": "p"}))
    return ckpt, cfg


@pytest.mark.numerics
@pytest.mark.parametrize("case", ["trm_att_rope", "trm_mlp_t", "hrm"])
def test_imported_official_checkpoint_reproduces_the_official_outputs(tmp_path, case, capsys):
    ckpt, cfg = _official_files(tmp_path, case)
    out = tmp_path / "imported"
    assert main(["import-official", str(ckpt), "--config", str(cfg), "--seq-len", "81", "--out", str(out)]) == 0
    assert "fields not used" not in capsys.readouterr().out
    loaded = load_checkpoint(out)
    assert loaded.meta["step"] == 1234 and loaded.cfg.model.arch == ("hrm" if case == "hrm" else "trm")
    io = load_file(str(fixture_file(f"official/{case}.io.safetensors")))
    model, batch = loaded.model, _batch(io, "batch_a")
    numerics.check_f32_against_fixture(model, numerics.steps_of(batch), fixture_steps(io), case)
    steps = numerics.eval_steps(model, batch, 3)
    assert all(torch.equal(st["halted"], io[f"step{k}.halted"]) for k, st in enumerate(steps, start=1))


@pytest.mark.numerics
def test_eval_on_an_official_layout_dataset_reports_the_official_metrics(tmp_path):
    """token_accuracy / exact_accuracy / exact_by_step computed from the official step logits."""
    case = "trm_att_rope"
    ckpt, cfg = _official_files(tmp_path, case)
    io = load_file(str(fixture_file(f"official/{case}.io.safetensors")))
    inputs, labels = io["batch_a.inputs"].numpy(), io["batch_a.labels"].numpy().copy()
    labels[labels == -100] = 0  # the official builders' ignore id
    split = make_split(inputs, labels, vocab_size=11, num_identifiers=4,
                       puzzle_identifiers=io["batch_a.puzzle_identifiers"].numpy())
    data = tmp_path / "data"
    write_dataset(data, {"train": split, "test": split}, ["<blank>", "a", "b", "c"], {})
    (data / "task.json").unlink()  # as written by the official builder
    out = tmp_path / "imported"
    assert main(["import-official", str(ckpt), "--config", str(cfg), "--data", str(data), "--out", str(out)]) == 0
    js = tmp_path / "m.json"
    assert main(["eval", str(out), "--data", str(data), "--json", str(js)]) == 0
    got = json.loads(js.read_text())
    mask = io["batch_a.labels"] != -100
    want_by_step = []
    for k in range(1, 4):
        correct = (io[f"step{k}.logits"].argmax(-1) == io["batch_a.labels"]) & mask
        want_by_step.append(float((correct.sum(-1) == mask.sum(-1)).float().mean()))
    token = float((correct.sum(-1) / mask.sum(-1)).mean())
    assert got["n"] == 4 and got["exact_by_step"] == want_by_step
    assert abs(got["token_accuracy"] - token) < 1e-6 and got["exact_accuracy"] == want_by_step[-1]
    assert got["valid_rate"] is None  # no task.json: no checker
    assert json.loads((out / "identifiers.json").read_text()) == ["<blank>", "a", "b", "c"]
    res = evaluate(load_checkpoint(out).model, load_split(data, "test"), None)
    assert res["exact_by_step"] == want_by_step


def test_plain_prefix_and_bf16_init_vectors(tmp_path, capsys):
    ckpt, cfg = _official_files(tmp_path, "trm_mlp_t", prefix="model.", init_dtype=torch.bfloat16,
                                extra_arch={"some_new_flag": 1})
    out = tmp_path / "imported"
    assert main(["import-official", str(ckpt), "--config", str(cfg), "--out", str(out)]) == 0  # seq_len from mlp_t
    assert "fields not used by recursa's TRM: arch.some_new_flag" in capsys.readouterr().out
    loaded = load_checkpoint(out)
    ref = load_file(str(fixture_file("official/trm_mlp_t.weights.safetensors")))["inner.H_init"]
    assert loaded.model.inner.H_init.dtype == torch.float32
    assert torch.equal(loaded.model.inner.H_init, ref.to(torch.bfloat16).float())
    assert loaded.spec.seq_len == 81 and loaded.spec.num_puzzle_identifiers == 4


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_checkpoint_that_runs_code_on_load_is_refused(tmp_path, capsys):
    _, cfg = _official_files(tmp_path, "trm_att_rope")
    marker = tmp_path / "pwned"
    evil = tmp_path / "step_1"
    torch.save({"model.inner.lm_head.weight": torch.zeros(2), "x": _Evil(marker)}, evil)
    assert main(["import-official", str(evil), "--config", str(cfg), "--seq-len", "81", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "refused to load" in err and str(evil) in err
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_shape_and_key_mismatches_name_every_key(tmp_path, capsys):
    ckpt, cfg = _official_files(tmp_path, "trm_att_rope", extra_arch={"hidden_size": 32, "num_heads": 2})
    sd = torch.load(ckpt, weights_only=True)
    sd["_orig_mod.model.inner.extra.weight"] = torch.zeros(1)
    del sd["_orig_mod.model.inner.q_head.bias"]
    torch.save(sd, ckpt)
    assert main(["import-official", str(ckpt), "--config", str(cfg), "--seq-len", "81", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "inner.lm_head.weight: checkpoint (11, 64) vs model (11, 32)" in err
    assert "missing inner.q_head.bias" in err and "unexpected inner.extra.weight" in err
    assert not (tmp_path / "o").exists()


def test_arch_and_seq_len_errors(tmp_path, capsys):
    ckpt, cfg = _official_files(tmp_path, "trm_att_rope")
    assert main(["import-official", str(ckpt), "--config", str(cfg), "--arch", "hrm", "--out", str(tmp_path / "o")]) == 2
    assert "is a TRM model, not --arch hrm" in capsys.readouterr().err
    assert main(["import-official", str(ckpt), "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "pass --data DIR or --seq-len N" in capsys.readouterr().err
    np.testing.assert_equal((tmp_path / "o").exists(), False)


@pytest.mark.numerics
@pytest.mark.parametrize("case,name", [("trm_singlez", "recursive_reasoning.trm_singlez@TinyRecursiveReasoningModel_ACTV1"),
                                       ("transformers_baseline", "recursive_reasoning.transformers_baseline@Model_ACTV2")])
def test_official_ablation_checkpoints_import_and_reproduce_the_official_outputs(tmp_path, case, name, capsys):
    """The single-latent ablation and the transformer baseline are recognised from arch.name, their
    official keys (L_init only; H_level.* + H_init) load, and the imported model gives the official
    code's outputs (tests/fixtures/official/CASE.*, made by make_trm_ablations.py from the official
    repository)."""
    meta = json.loads(fixture_file(f"official/{case}.json").read_text())
    weights = load_file(str(fixture_file(f"official/{case}.weights.safetensors")))
    io = load_file(str(fixture_file(f"official/{case}.io.safetensors")))
    ckpt = tmp_path / "step_7"
    torch.save({"_orig_mod.model." + k: v.float() for k, v in weights.items()}, ckpt)
    arch = {k: v for k, v in meta["config"].items() if k not in ("batch_size", "seq_len", "vocab_size",
                                                                    "num_puzzle_identifiers")}
    arch.update({"name": name, "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"}})
    yml = tmp_path / "all_config.yaml"
    yml.write_text(yaml.safe_dump({"arch": arch}))
    out = tmp_path / "imported"
    assert main(["import-official", str(ckpt), "--config", str(yml), "--seq-len", str(meta["config"]["seq_len"]),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    loaded = load_checkpoint(out)
    m = loaded.cfg.model
    if case == "trm_singlez":
        assert m.arch == "trm" and m.single_latent and "inner.L_init" in weights and "inner.H_init" not in weights
    else:
        assert m.arch == "baseline" and m.baseline_layers == 3 and loaded.model.inner.prefix_len == 1 and "inner.H_init" in weights
        assert "fields not used" not in printed
    batch = {k: io[f"batch.{k}"].long() for k in ("inputs", "labels", "puzzle_identifiers")}
    official = [{n: io[f"step{k}.{n}"] for n in ("logits", "q_halt_logits", "q_continue_logits")} for k in (1, 2, 3)]
    official[2].update({f"state{i}": io[f"final.{n}"] for i, n in enumerate(meta["carry"])})  # the carry after step 3
    numerics.check_f32_against_fixture(loaded.model, numerics.steps_of(batch), official, case)
    steps = numerics.eval_steps(loaded.model, batch, 3)
    assert len([n for n in steps[2] if n.startswith("state")]) == len(meta["carry"])
    assert all(torch.equal(st["halted"], io[f"step{k}.halted"]) for k, st in enumerate(steps, start=1))


def test_official_baseline_config_with_twelve_heads_at_hidden_512(tmp_path, capsys):
    """The official transformers_baseline.yaml (12 heads at hidden 512: head size 42, not a divisor)
    builds with the official projection shapes and imports."""
    from recursa.config import ModelConfig
    from recursa.models import DataSpec, build_model
    cfg = ModelConfig(arch="baseline", baseline_layers=2, hidden_size=512, num_heads=12, halt_max_steps=16)
    ref = build_model(cfg, DataSpec(vocab_size=11, seq_len=81, num_puzzle_identifiers=2), seed=0).eval()
    attn = ref.inner.H_level.layers[0].self_attn
    assert attn.head_dim == 42 and attn.qkv_proj.weight.shape == (3 * 12 * 42, 512)
    assert attn.o_proj.weight.shape == (512, 12 * 42) and ref.inner.rotary_emb.cos.shape == (81 + 1, 42)
    arch = {"name": "recursive_reasoning.transformers_baseline@Model_ACTV2", "H_cycles": 1, "H_layers": 2,
            "hidden_size": 512, "num_heads": 12, "expansion": 4, "puzzle_emb_ndim": 512, "pos_encodings": "rope",
            "halt_max_steps": 16, "halt_exploration_prob": 0.1,
            "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"}}
    ckpt = tmp_path / "step_1"
    torch.save({"_orig_mod.model." + k: v for k, v in ref.state_dict().items()}, ckpt)
    (tmp_path / "all_config.yaml").write_text(yaml.safe_dump({"arch": arch}))
    out = tmp_path / "imported"
    assert main(["import-official", str(ckpt), "--config", str(tmp_path / "all_config.yaml"), "--seq-len", "81",
                 "--out", str(out)]) == 0
    # forward_dtype not given: the official default, bfloat16; --dtype float32 computes in float32
    assert load_checkpoint(out).cfg.model.forward_dtype == "bfloat16"
    loaded = load_checkpoint(out, dtype="float32")
    assert loaded.cfg.model.num_heads == 12 and loaded.cfg.model.hidden_size == 512
    g = torch.Generator().manual_seed(0)
    batch = {"inputs": torch.randint(1, 11, (2, 81), generator=g), "labels": torch.randint(2, 11, (2, 81), generator=g),
             "puzzle_identifiers": torch.tensor([0, 1])}
    with torch.inference_mode():
        _, o1 = ref(ref.initial_carry(batch), batch)
        _, o2 = loaded.model(loaded.model.initial_carry(batch), batch)
    assert torch.equal(o1["logits"], o2["logits"])
    assert "not given, so the official defaults: arch.forward_dtype = bfloat16" in capsys.readouterr().out


@pytest.mark.numerics
def test_official_trm_hier6_imports_and_reproduces_the_official_outputs(tmp_path, capsys):
    """The multi-latent ablation (official trm_hier6): arch.name gives latents = 6; its official keys
    (H_init, L1_init..L6_init) load, and the imported model reproduces the official code's outputs
    (tests/fixtures/official/trm_hier6.*, made by make_trm_hier6.py from the official code)."""
    meta = json.loads(fixture_file("official/trm_hier6.json").read_text())
    weights = load_file(str(fixture_file("official/trm_hier6.weights.safetensors")))
    io = load_file(str(fixture_file("official/trm_hier6.io.safetensors")))
    assert {f"inner.L{i}_init" for i in range(1, 7)} <= set(weights) and "inner.L_init" not in weights
    ckpt = tmp_path / "step_99"
    torch.save({"_orig_mod.model." + k: v.float() for k, v in weights.items()}, ckpt)
    arch = {k: v for k, v in meta["config"].items() if k != "batch_size"}
    arch.update({"name": "recursive_reasoning.trm_hier6@TinyRecursiveReasoningModel_ACTV1",
                 "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"}})
    yml = tmp_path / "all_config.yaml"
    yml.write_text(yaml.safe_dump({"arch": arch}))
    out = tmp_path / "imported"
    assert main(["import-official", str(ckpt), "--config", str(yml), "--seq-len", str(arch["seq_len"]),
                 "--out", str(out)]) == 0
    assert "fields not used" not in capsys.readouterr().out
    loaded = load_checkpoint(out)
    assert loaded.cfg.model.latents == 6 and loaded.cfg.model.L_cycles == 6
    batch = {k: io[f"batch.{k}"].long() for k in ("inputs", "labels", "puzzle_identifiers")}
    names = ["final.z_H"] + [f"final.z_L{i}" for i in range(1, 7)]
    official = [{n: io[f"step{k}.{n}"] for n in ("logits", "q_halt_logits", "q_continue_logits")} for k in (1, 2, 3)]
    official[2].update({f"state{i}": io[name] for i, name in enumerate(names)})  # the carry after step 3
    numerics.check_f32_against_fixture(loaded.model, numerics.steps_of(batch), official, "trm_hier6")
    steps = numerics.eval_steps(loaded.model, batch, 3)
    assert len([n for n in steps[2] if n.startswith("state")]) == 7
    assert all(torch.equal(st["halted"], io[f"step{k}.halted"]) for k, st in enumerate(steps, start=1))


@pytest.mark.numerics
def test_official_urm_checkpoint_imports_and_reproduces_the_official_outputs(tmp_path, capsys):
    """A URM checkpoint as UbiquantAI/URM's pretrain.py saves it ({"step", "model_state_dict" of the
    compiled loss head, "optimizer_states", "rng_state"}) with URM's config names (arch.loops,
    arch.num_layers) imports, and the imported model gives the official outputs (fixture urm.*)."""
    meta = json.loads(fixture_file("official/urm.json").read_text())
    weights = load_file(str(fixture_file("official/urm.weights.safetensors")))
    io = load_file(str(fixture_file("official/urm.io.safetensors")))
    c = meta["config"]
    ckpt = tmp_path / "step_7"
    torch.save({"step": 7, "model_state_dict": {"_orig_mod.model." + k: v for k, v in weights.items()},
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]}],
                "rng_state": torch.zeros(8, dtype=torch.uint8)}, ckpt)
    arch = {"name": "urm.urm@URM", "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
            "loops": c["loops"], "num_layers": c["num_layers"], "hidden_size": c["hidden_size"],
            "num_heads": c["num_heads"], "expansion": c["expansion"], "H_cycles": c["H_cycles"],
            "L_cycles": c["L_cycles"], "loop_deltas": [0, 8], "puzzle_emb_ndim": c["puzzle_emb_ndim"],
            "pos_encodings": "rope", "forward_dtype": c["forward_dtype"], "profile": True}
    yml = tmp_path / "all_config.yaml"
    yml.write_text(yaml.safe_dump({"arch": arch, "lr": 1e-4, "weight_decay": 0.1, "global_batch_size": 768}))
    out = tmp_path / "imported"
    assert main(["import-official", str(tmp_path), "--seq-len", str(c["seq_len"]), "--out", str(out)]) == 0
    assert "fields not used" not in capsys.readouterr().out
    loaded = load_checkpoint(out)
    m = loaded.cfg.model
    assert (m.arch, m.halt_max_steps, m.L_layers, m.conv_swiglu, m.H_cycles, m.L_cycles) == \
        ("urm", c["loops"], c["num_layers"], 2, c["H_cycles"], c["L_cycles"])
    assert loaded.cfg.train.batch_size == 768 and loaded.meta["step"] == 7
    batch = {k: io[f"batch.{k}"].long() for k in ("inputs", "labels", "puzzle_identifiers")}
    check_urm_against_fixture(loaded.model, batch, io)


def test_import_from_the_official_run_directory_latest_or_named_step(tmp_path, capsys):
    """CKPT may be the official run directory: its latest step_N (or --step N), with the
    all_config.yaml the official trainer writes beside the checkpoints."""
    ckpt, cfg = _official_files(tmp_path, "trm_att_rope")
    for n in (651522, 723914):
        (tmp_path / f"step_{n}").write_bytes(ckpt.read_bytes())
    ckpt.unlink()
    assert main(["import-official", str(tmp_path), "--seq-len", "81", "--out", str(tmp_path / "last")]) == 0
    assert load_checkpoint(tmp_path / "last").meta["step"] == 723914
    assert main(["import-official", str(tmp_path), "--step", "651522", "--seq-len", "81",
                 "--out", str(tmp_path / "earlier")]) == 0
    assert load_checkpoint(tmp_path / "earlier").meta["step"] == 651522
    capsys.readouterr()
    assert main(["import-official", str(tmp_path), "--step", "7", "--seq-len", "81", "--out", str(tmp_path / "x")]) == 2
    assert "no step_7 (it has steps 651522, 723914)" in capsys.readouterr().err
    cfg.unlink()
    assert main(["import-official", str(tmp_path), "--seq-len", "81", "--out", str(tmp_path / "y")]) == 2
    assert "pass --config" in capsys.readouterr().err
