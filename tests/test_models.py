"""Model semantics: official fixtures, gradient flow, carry streaming, parameter parity."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from recursa.config import ModelConfig
from recursa.errors import RecursaError
from recursa.models import DataSpec, build_model, count_parameters
from recursa.tasks import TASKS
from recursa.tasks.sudoku import SudokuTask

from . import numerics
from .conftest import data_file, fixture_file


def _fixture_model(case):
    meta = json.loads(fixture_file(f"official/{case}.json").read_text())
    c = meta["config"]
    hrm = case == "hrm"
    cfg = ModelConfig(arch="hrm" if hrm else "trm", hidden_size=c["hidden_size"], num_heads=c["num_heads"],
                      expansion=c["expansion"], L_layers=c["L_layers"], H_layers=c["H_layers"] if hrm else 4,
                      H_cycles=c["H_cycles"], L_cycles=c["L_cycles"], halt_max_steps=c["halt_max_steps"],
                      mlp_t=c.get("mlp_t", False), pos_encodings=c["pos_encodings"],
                      puzzle_emb_ndim=c["puzzle_emb_ndim"], puzzle_emb_len=c.get("puzzle_emb_len", 0),
                      q_continue=hrm)
    model = build_model(cfg, DataSpec(c["vocab_size"], c["seq_len"], c["num_puzzle_identifiers"]))
    weights = load_file(str(fixture_file(f"official/{case}.weights.safetensors")))
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    io = load_file(str(fixture_file(f"official/{case}.io.safetensors")))
    return model.eval(), io


def _batch(io, name):
    return {k: io[f"{name}.{k}"].long() for k in ("inputs", "labels", "puzzle_identifiers")}


def fixture_steps(io, n: int = 3) -> list[dict[str, torch.Tensor]]:
    """The official outputs of eval ACT steps 1..n under recursa's names (numerics.eval_steps)."""
    names = {"logits": "logits", "q_halt_logits": "q_halt_logits", "q_continue_logits": "q_continue_logits",
             "state0": "z_H", "state1": "z_L"}
    return [{ours: io[f"step{k}.{theirs}"] for ours, theirs in names.items() if f"step{k}.{theirs}" in io}
            for k in range(1, n + 1)]


def _mixed_run(io):
    """The official mixed-reset step: rows 0 and 2 restart on batch_b, rows 1 and 3 continue."""
    batch = _batch(io, "batch_a")

    def run(model):
        with torch.inference_mode():
            carry = model.initial_carry(batch)
            carry, _ = model(carry, batch)
            carry.halted = torch.tensor([True, False, True, False])
            carry, out = model(carry, _batch(io, "batch_b"))
        assert torch.equal(carry.steps, io["mixed.steps"])
        assert torch.equal(carry.data["puzzle_identifiers"].to(torch.int32), io["mixed.current_puzzle_identifiers"])
        return [{k: out[k].double() for k in ("logits", "q_halt_logits", "q_continue_logits")}]
    return run


@pytest.mark.numerics
@pytest.mark.parametrize("case", ["trm_att_rope", "trm_mlp_t", "hrm"])
def test_official_fixture_step_by_step(case):
    """The official weights give the official outputs at every ACT step (logits, both q heads, both
    states), within what float32 rounding can do at that depth (tests/numerics.py), and the
    mixed-reset step; the step counters and halted flags exactly; the official losses."""
    from recursa.training.losses import act_loss
    model, io = _fixture_model(case)
    batch = _batch(io, "batch_a")
    numerics.check_f32_against_fixture(model, numerics.steps_of(batch), fixture_steps(io), case)
    numerics.check_f32_against_fixture(model, _mixed_run(io), [{k: io[f"mixed.{k}"] for k in (
        "logits", "q_halt_logits", "q_continue_logits")}], case + " mixed")
    with torch.inference_mode():
        carry = model.initial_carry(batch)
        for k in range(1, 4):
            carry, out = model(carry, batch)
            assert torch.equal(carry.steps, io[f"step{k}.steps"])
            assert torch.equal(carry.halted, io[f"step{k}.halted"])
            labels = carry.data["labels"]
            # The losses are means over cells of smooth functions of the logits (|d loss / d logit|
            # <= 1 per row, 4 rows): logit errors of <= 4e-3 (the largest 8 s_k) move them < 2e-2;
            # compared at 1e-3, what the logits agree to is checked above.
            loss, m = act_loss(out, labels, carry.halted, carry.steps)
            assert abs(loss.item() - io[f"step{k}.loss"].item()) <= 1e-3
            assert abs(m["lm_loss"].item() - io[f"step{k}.lm_loss"].item()) <= 1e-3
            assert abs(m["q_halt_loss"].item() - io[f"step{k}.q_halt_loss"].item()) <= 1e-3


def _small(**kw):
    cfg = dict(hidden_size=32, num_heads=2, L_layers=2, H_cycles=3, L_cycles=2, halt_max_steps=4,
               pos_encodings="rope", puzzle_emb_len=2)
    cfg.update(kw)
    return build_model(ModelConfig(**cfg), DataSpec(vocab_size=6, seq_len=16, num_puzzle_identifiers=3), seed=1)


def _rand_batch(B=4, L=16, V=6):
    g = torch.Generator().manual_seed(0)
    return {"inputs": torch.randint(1, V, (B, L), generator=g), "labels": torch.randint(2, V, (B, L), generator=g),
            "puzzle_identifiers": torch.randint(0, 3, (B,), generator=g)}


@pytest.mark.parametrize("mlp_t", [False, True])
def test_only_the_last_cycle_carries_gradient(mlp_t):
    model = _small(mlp_t=mlp_t, pos_encodings="none" if mlp_t else "rope").train()
    batch = _rand_batch()
    grad_calls = []
    model.inner.L_level.register_forward_hook(lambda mod, inp, out: grad_calls.append(out.requires_grad))
    carry = model.initial_carry(batch)
    z_H = carry.state[0].clone().requires_grad_(True)
    z_L = carry.state[1].clone().requires_grad_(True)
    state, logits, q_halt, _ = model.inner((z_H, z_L), batch)
    c = model.inner.cfg
    per_cycle = c.L_cycles + 1
    assert grad_calls == [False] * (c.H_cycles - 1) * per_cycle + [True] * per_cycle
    (logits.square().mean() + q_halt.sum()).backward()
    # The no-grad cycles cut the graph: nothing flows back to the incoming state...
    assert z_H.grad is None and z_L.grad is None
    # ...while every weight used in the last cycle gets a gradient.
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not state[0].requires_grad and not state[1].requires_grad
    # With a single cycle the gradient does reach the incoming state (the check above can fail).
    one = _small(H_cycles=1).train()
    zh = one.initial_carry(batch).state[0].clone().requires_grad_(True)
    zl = one.initial_carry(batch).state[1].clone().requires_grad_(True)
    _, lg, _, _ = one.inner((zh, zl), batch)
    lg.square().mean().backward()
    assert zh.grad is not None and zh.grad.abs().sum() > 0


def test_puzzle_embedding_gets_gradient_through_local_rows():
    model = _small().train()
    batch = _rand_batch()
    carry, out = model(model.initial_carry(batch), batch)
    out["logits"].square().mean().backward()
    emb = model.inner.puzzle_emb
    assert emb.local_weights.grad is not None and emb.local_weights.grad.abs().sum() > 0
    assert torch.equal(emb.local_ids, batch["puzzle_identifiers"])


def test_baseline_has_same_parameter_count_and_runs_once():
    trm, base = _small(arch="trm"), _small(arch="baseline", halt_max_steps=1)
    assert count_parameters(trm) == count_parameters(base)
    assert base.halt_max_steps == 1
    batch = _rand_batch()
    base.eval()
    with torch.inference_mode():
        carry, out = base(base.initial_carry(batch), batch)
    assert carry.halted.all() and out["logits"].shape == (4, 16, 6)


def test_training_halting_and_exploration():
    model = _small(halt_max_steps=5, halt_exploration_prob=0.0).train()
    with torch.no_grad():  # make q_halt > 0 everywhere: rows halt after one step in training
        model.inner.q_head.bias.fill_(5.0)
    batch = _rand_batch()
    carry, _ = model(model.initial_carry(batch), batch)
    assert carry.halted.all()
    # With exploration on every row, none may halt before step 2.
    model.halt_exploration_prob = 1.0
    g = torch.Generator().manual_seed(0)
    carry, _ = model(model.initial_carry(batch), batch, generator=g)
    assert not carry.halted.any()
    # In eval mode only halt_max_steps counts.
    model.eval()
    carry = model.initial_carry(batch)
    with torch.inference_mode():
        for k in range(5):
            carry, _ = model(carry, batch)
            assert carry.halted.all() == (k == 4)


@pytest.mark.parametrize("q_continue", [False, True])
def test_without_early_halt_every_training_row_runs_all_steps(q_continue):
    """model.early_halt = false: the q head says halt on every row at every step, yet training rows
    halt only at halt_max_steps; the q head still gets its loss (and the continue target)."""
    from recursa.training.losses import act_loss
    model = _small(halt_max_steps=4, halt_exploration_prob=0.0, early_halt=False, q_continue=q_continue).train()
    with torch.no_grad():
        model.inner.q_head.bias.copy_(torch.tensor([5.0, -5.0]))  # q_halt > 0 and > q_continue everywhere
    batch = _rand_batch()
    carry = model.initial_carry(batch)
    for k in range(1, 5):
        carry, out = model(carry, batch)
        assert carry.steps.tolist() == [k] * 4 and carry.halted.all() == (k == 4)
    assert ("target_q_continue" in out) == q_continue
    loss, m = act_loss(out, carry.data["labels"], carry.halted, carry.steps)
    loss.backward()
    assert model.inner.q_head.weight.grad.abs().sum() > 0
    # The same model with the official rule halts every row after one step.
    model.early_halt = True
    carry, _ = model(model.initial_carry(batch), batch)
    assert carry.halted.all() and carry.steps.tolist() == [1] * 4


@pytest.mark.parametrize("arch", ["trm", "hrm"])
def test_halt_detach_keeps_the_halting_loss_out_of_the_recursion(arch):
    """model.halt_detach: the halting logits' gradient reaches the q head and nothing else; the
    answer is unchanged; without it (official) the network under the head gets gradient too."""
    batch = _rand_batch()
    outs = {}
    for detach in (False, True):
        model = _small(arch=arch, H_layers=1, halt_detach=detach).train()
        with torch.no_grad():  # the head starts at zero weights (official): give it some, seeded
            model.inner.q_head.weight.copy_(torch.randn(model.inner.q_head.weight.shape,
                                                        generator=torch.Generator().manual_seed(0)))
        carry, out = model(model.initial_carry(batch), batch)
        (out["q_halt_logits"].sum() + out["q_continue_logits"].sum()).backward()
        got = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        outs[detach] = (got, out["logits"].detach(), out["q_halt_logits"].detach())
    assert outs[True][0] == {"inner.q_head.weight", "inner.q_head.bias"}
    assert outs[False][0] > outs[True][0]  # the official head steers the blocks under it
    assert torch.equal(outs[True][1], outs[False][1]) and torch.equal(outs[True][2], outs[False][2])


def test_halted_rows_take_new_data_and_others_keep_theirs():
    model = _small().eval()
    a, b = _rand_batch(), _rand_batch()
    b = {k: v.flip(0) for k, v in b.items()}
    with torch.inference_mode():
        carry, _ = model(model.initial_carry(a), a)
        carry.halted = torch.tensor([False, True, False, True])
        carry, _ = model(carry, b)
    assert torch.equal(carry.data["inputs"][0], a["inputs"][0]) and torch.equal(carry.data["inputs"][1], b["inputs"][1])
    assert carry.steps.tolist() == [2, 1, 2, 1]


def test_hrm_only_the_final_L_and_H_updates_carry_gradient():
    model = _small(arch="hrm", H_layers=2, H_cycles=2, L_cycles=3).train()
    batch = _rand_batch()
    calls = []
    model.inner.L_level.register_forward_hook(lambda mod, inp, out: calls.append(("L", out.requires_grad)))
    model.inner.H_level.register_forward_hook(lambda mod, inp, out: calls.append(("H", out.requires_grad)))
    carry = model.initial_carry(batch)
    z_H = carry.state[0].clone().requires_grad_(True)
    z_L = carry.state[1].clone().requires_grad_(True)
    _, logits, q_halt, q_cont = model.inner((z_H, z_L), batch)
    # 2 cycles x 3 L updates + 2 H updates; all but the last L and the last H under no_grad.
    assert calls == [("L", False)] * 3 + [("H", False)] + [("L", False)] * 2 + [("L", True), ("H", True)]
    (logits.square().mean() + q_halt.sum() + q_cont.sum()).backward()
    assert z_H.grad is None and z_L.grad is None
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_q_learning_halting_gives_a_continue_target_and_loss():
    from recursa.training.losses import act_loss
    model = _small(arch="hrm", H_layers=1, q_continue=True, halt_exploration_prob=0.0).train()
    batch = _rand_batch()
    carry, out = model(model.initial_carry(batch), batch)
    target = out["target_q_continue"]
    assert target.shape == (4,) and ((target > 0) & (target < 1)).all() and not target.requires_grad
    loss, m = act_loss(out, carry.data["labels"], carry.halted, carry.steps)
    assert "q_continue_loss" in m
    loss.backward()
    assert model.inner.q_head.weight.grad.abs().sum() > 0
    # Halting compares q_halt with q_continue: force q_halt > q_continue.
    with torch.no_grad():
        model.inner.q_head.bias.copy_(torch.tensor([3.0, -3.0]))
    carry, _ = model(model.initial_carry(batch), batch)
    assert carry.halted.all()
    # TRM with the continue loss (the official no_ACT_continue=False, which crashes there) works too.
    trm = _small(q_continue=True).train()
    carry, out = trm(trm.initial_carry(batch), batch)
    act_loss(out, carry.data["labels"], carry.halted, carry.steps)[0].backward()


def test_single_latent_ablation_update_rule_and_gradient():
    """Official trm_singlez: per cycle, n times z <- f(z + x), then z <- f(z); only the last cycle
    carries gradient; one state initialised from L_init (the only init buffer, as official)."""
    model = _small(single_latent=True, H_cycles=3, L_cycles=2).train()
    inner = model.inner
    assert "L_init" in inner.state_dict() and "H_init" not in inner.state_dict()
    batch = _rand_batch()
    calls = []
    inner.L_level.register_forward_hook(lambda mod, inp, out: calls.append((inp[1] is not None, out.requires_grad)))
    (z0,) = model.initial_carry(batch).state
    z_in = z0.clone().requires_grad_(True)
    state, logits, q_halt, _ = inner((z_in,), batch)
    per_cycle = [True] * 2 + [False]  # n injected updates, then one without injection
    assert [c[0] for c in calls] == per_cycle * 3
    assert [c[1] for c in calls] == [False] * 6 + [True] * 3
    # The same numbers from the blocks applied by hand.
    with torch.no_grad():
        x = inner.embed(batch["inputs"], batch["puzzle_identifiers"])

        def f(h):
            for layer in inner.L_level.layers:
                h = layer(h, inner.rotary_emb)
            return h
        z = z0
        for _ in range(3):
            for _ in range(2):
                z = f(z + x)
            z = f(z)
        assert torch.equal(state[0], z)
        assert torch.equal(logits, inner.lm_head(z)[:, inner.prefix_len:])
    (logits.square().mean() + q_halt.sum()).backward()
    assert z_in.grad is None
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with pytest.raises(Exception, match="single_latent is a TRM ablation"):
        ModelConfig(arch="hrm", single_latent=True)


def test_official_transformer_baseline_eight_layers_carried_state():
    """transformers_baseline: `baseline_layers` blocks applied once per supervision step,
    z <- H_level(z + x) from H_init, z carried across steps, halting on q_halt > q_continue."""
    trm, base = _small(), _small(arch="baseline", baseline_layers=8, halt_exploration_prob=0.0)
    inner = base.inner
    assert len(inner.H_level.layers) == 8 and "H_init" in inner.state_dict() and "L_init" not in inner.state_dict()
    block = sum(p.numel() for p in trm.inner.L_level.layers[0].parameters())
    assert count_parameters(base) == count_parameters(trm) + 6 * block
    assert inner.prefix_len == 1  # ceil(ndim / D), as official
    batch = _rand_batch()
    calls = []
    inner.H_level.register_forward_hook(lambda mod, inp, out: calls.append(1))
    base.eval()
    with torch.inference_mode():
        carry = base.initial_carry(batch)
        carry, out1 = base(carry, batch)
        assert len(calls) == 1 and not carry.halted.any()
        x = inner.embed(batch["inputs"], batch["puzzle_identifiers"])
        z1 = carry.state[0]
        assert torch.equal(z1, inner.H_level(inner.H_init.expand_as(x), x, inner.rotary_emb))
        carry, out2 = base(carry, batch)  # the second step refines the carried state
        assert torch.equal(carry.state[0], inner.H_level(z1, x, inner.rotary_emb))
        assert not torch.equal(out1["logits"], out2["logits"])
    # Training halts on q_halt > q_continue (not q_halt > 0), and no continue target is computed.
    base.train()
    with torch.no_grad():
        inner.q_head.bias.copy_(torch.tensor([-2.0, -3.0]))
    carry, out = base(base.initial_carry(batch), batch)
    assert carry.halted.all() and "target_q_continue" not in out
    with torch.no_grad():
        inner.q_head.bias.copy_(torch.tensor([-3.0, -2.0]))
    carry, _ = base(base.initial_carry(batch), batch)
    assert not carry.halted.any()
    # halt_max_steps = 1 is the plain non-recursive transformer.
    one = _small(arch="baseline", halt_max_steps=1).eval()
    with torch.inference_mode():
        carry, _ = one(one.initial_carry(batch), batch)
    assert carry.halted.all()


def test_multi_latent_ablation_update_rule_and_gradient():
    """latents = K (official trm_hier6): latent update i replaces z_i with f(sum z, y + x), then
    y <- f(y, sum z); only the last cycle carries gradient; latents past n keep their init."""
    from recursa.models.trm import MultiLatentTRM
    model = _small(latents=4, H_cycles=2, L_cycles=3).train()
    inner = model.inner
    assert isinstance(inner, MultiLatentTRM)
    assert {"H_init", "L1_init", "L2_init", "L3_init", "L4_init"} <= set(dict(inner.named_buffers()))
    assert "L_init" not in dict(inner.named_buffers())
    g = torch.Generator().manual_seed(0)
    batch = {"inputs": torch.randint(0, 6, (2, 16), generator=g), "labels": torch.randint(1, 6, (2, 16), generator=g),
             "puzzle_identifiers": torch.tensor([0, 2])}
    calls = []
    f = inner.L_level.forward
    inner.L_level.forward = lambda h, inj, rope: calls.append((h.detach().clone(), torch.is_grad_enabled())) or f(h, inj, rope)
    state = inner.initial_state(2, torch.device("cpu"))
    new, logits, _, _ = inner(state, batch)
    inner.L_level.forward = f
    # 2 cycles x (3 latent updates + 1 answer update); only the second cycle's calls carry gradient
    assert [grad for _, grad in calls] == [False] * 4 + [True] * 4
    # the first latent update sees the sum of the init latents; the 4th latent is never updated
    z0 = sum(state[1:][1:], state[1])
    assert torch.equal(calls[0][0], z0)
    assert torch.equal(new[4], state[4]) and not torch.equal(new[1], state[1])
    logits.sum().backward()
    assert inner.L_level.layers[0].mlp.down_proj.weight.grad is not None
    # n must not exceed K; TRM only
    with pytest.raises(Exception, match="L_cycles = 5 > model.latents = 4"):
        ModelConfig(latents=4, L_cycles=5)
    with pytest.raises(Exception, match="TRM ablation"):
        ModelConfig(arch="hrm", latents=6, L_cycles=2)
    with pytest.raises(Exception, match="single_latent"):
        ModelConfig(latents=6, single_latent=True)


def test_conv_swiglu_receptive_field_is_the_kernel_over_earlier_tokens():
    """URM's ConvSwiGLU (kernel 2): changing token t's input changes the SwiGLU output at tokens t
    and t+1 only; without the convolution, at token t only."""
    from recursa.models.layers import SwiGLU
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 10, 16, generator=g)
    x2 = x.clone()
    x2[:, 4] += 1.0
    for kernel, expect in ((0, [4]), (2, [4, 5]), (3, [3, 4, 5])):  # URM: padding k // 2, first L outputs
        f = SwiGLU(16, 4.0, torch.Generator().manual_seed(1), multiple=8, conv_kernel=kernel)
        with torch.no_grad():
            diff = (f(x2) - f(x)).abs().amax(dim=(0, 2))
        assert torch.nonzero(diff > 1e-7).flatten().tolist() == expect, kernel
    m = _small(conv_swiglu=2)
    names = dict(m.named_parameters())
    assert names["inner.L_level.layers.0.mlp.dwconv.weight"].shape[1:] == (1, 2)  # depthwise, kernel 2
    a = _small(conv_swiglu=2).state_dict()
    assert all(torch.equal(v, a[k]) for k, v in m.state_dict().items())  # seeded: the same weights again


def test_conv_2d_receptive_field_is_the_cells_grid_neighbourhood():
    """model.conv_2d: the convolution sees a cell's k x k neighbours on the grid (above and below
    included, no wrap across row ends); the prefix tokens only themselves; square grids only."""
    from recursa.models.layers import SwiGLU
    side, P = 4, 2
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, P + side * side, 16, generator=g)
    f = SwiGLU(16, 4.0, torch.Generator().manual_seed(1), multiple=8, conv_kernel=3, conv_grid=(P, side),
               conv_dtype="forward")

    def changed(pos):
        x2 = x.clone()
        x2[:, pos] += 1.0
        with torch.no_grad():
            diff = (f(x2) - f(x)).abs().amax(dim=(0, 2))
        return torch.nonzero(diff > 1e-7).flatten().tolist()

    cell = lambda r, c: P + r * side + c  # noqa: E731
    # cell (1, 1): its 3x3 block; cell (0, 3) at a corner: 4 cells, not (1, 0) (the next row's start)
    assert changed(cell(1, 1)) == sorted(cell(r, c) for r in (0, 1, 2) for c in (0, 1, 2))
    assert changed(cell(0, 3)) == sorted(cell(r, c) for r in (0, 1) for c in (2, 3))
    assert changed(0) == [0]  # a prefix token: no grid neighbours
    assert f.dwconv.weight.shape == (f.dwconv.weight.shape[0], 1, 3, 3)
    # in the forward dtype (float32 here) vs official URM's bfloat16 path: close, not identical
    fb = SwiGLU(16, 4.0, torch.Generator().manual_seed(1), multiple=8, conv_kernel=3, conv_grid=(P, side))
    with torch.no_grad():
        a, b = f(x), fb(x)
    assert a.dtype == b.dtype == torch.float32 and 0 < (a - b).abs().max() < 0.1
    # through the model: 16 cells = a 4x4 grid after the 2-token puzzle prefix; 15 cells are refused
    m = _small(conv_swiglu=3, conv_2d=True, conv_dtype="forward")
    assert m.inner.L_level.layers[0].mlp.conv_grid == (2, 4)
    with pytest.raises(Exception, match="odd"):
        ModelConfig(conv_swiglu=2, conv_2d=True)
    with pytest.raises(Exception, match="15 cells, not a square grid"):
        build_model(ModelConfig(hidden_size=32, num_heads=2, conv_swiglu=3, conv_2d=True),
                    DataSpec(vocab_size=6, seq_len=15, num_puzzle_identifiers=3), seed=1)


def test_conv_mixer_replaces_the_token_mixer_by_the_cells_grid_neighbourhood():
    """model.conv_mixer: the block's token mixer is a depthwise k x k convolution over the grid (no
    attention, no MLP over tokens); one block passes a change in a cell to its k x k neighbours only
    (the channel SwiGLU after it is per token), so the receptive field grows by k // 2 cells per block."""
    from recursa.models.layers import Block
    side, P = 5, 1
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, P + side * side, 16, generator=g)
    cell = lambda r, c: P + r * side + c  # noqa: E731
    for k in (3, 5):
        blk = Block(16, 2, 4.0, P + side * side, False, 1e-5, torch.Generator().manual_seed(1), 8,
                    mixer_kernel=k, mixer_grid=(P, side))
        assert not hasattr(blk, "self_attn") and not hasattr(blk, "mlp_t")

        def changed(pos):
            x2 = x.clone()
            x2[:, pos] += 1.0
            with torch.no_grad():
                diff = (blk(x2, None) - blk(x, None)).abs().amax(dim=(0, 2))
            return torch.nonzero(diff > 1e-6).flatten().tolist()

        r = k // 2
        assert changed(cell(2, 2)) == sorted(cell(i, j) for i in range(2 - r, 3 + r) for j in range(2 - r, 3 + r))
        assert changed(cell(0, 4)) == sorted(cell(i, j) for i in range(0, 1 + r) for j in range(4 - r, 5))  # corner
        assert changed(0) == [0]  # the prefix token: only itself
    m = _small(conv_mixer=3, mlp_t=True)  # the conv mixer takes the place of mlp_t too
    layer = m.inner.L_level.layers[0]
    assert hasattr(layer, "conv_mixer") and not hasattr(layer, "mlp_t") and layer.conv_mixer.grid == (2, 4)
    a = _small(conv_mixer=3, mlp_t=True).state_dict()
    assert all(torch.equal(v, a[k]) for k, v in m.state_dict().items())  # seeded: the same weights again
    for bad in (2, -1):
        with pytest.raises(Exception, match="conv_mixer"):
            ModelConfig(conv_mixer=bad)
    with pytest.raises(Exception, match="conv_mixer: the puzzle has 15 cells"):
        build_model(ModelConfig(hidden_size=32, num_heads=2, conv_mixer=3),
                    DataSpec(vocab_size=6, seq_len=15, num_puzzle_identifiers=3), seed=1)


def test_sudoku_declares_its_rows_columns_and_boxes_as_groups():
    """Task.groups for Sudoku: three partitions of the cells, each group N cells, and the box
    partition made of box_rows x box_cols rectangles (6x6: 2 x 3)."""
    task = SudokuTask(2, 3)
    rows, cols, boxes = (np.array(k).reshape(6, 6) for k in task.groups)
    assert (rows == np.arange(6)[:, None]).all() and (cols == np.arange(6)[None, :]).all()
    for b in range(6):
        r, c = np.nonzero(boxes == b)
        assert len(r) == 6 and r.max() - r.min() == 1 and c.max() - c.min() == 2  # a 2-row, 3-column box
    assert TASKS["maze"](size=5).groups is None  # a maze has no groups of cells


def test_group_mixer_averages_each_cells_row_column_and_box():
    """model.group_mixer: the block's token mixer gives each cell w_k * mean(group_k) summed over
    its row, column and box, + w_self * itself + b (checked against that sum written out, and
    against which cells a change reaches: exactly the changed cell's peers; a prefix token: only
    itself); it replaces attention; its weight is a (C, 1, K + 1) filter (not orthogonalised by Muon)."""
    from recursa.models.layers import Block, GroupMixer
    task, P, C = SudokuTask(2, 3), 2, 16
    x = torch.randn(3, P + 36, C, generator=torch.Generator().manual_seed(0))
    mix = GroupMixer(C, (P, task.groups), torch.Generator().manual_seed(1))
    assert mix.weight.shape == (C, 1, 4) and mix.bias.shape == (C,)
    w = mix.weight[:, 0].t()
    ids = torch.tensor(task.groups)
    want = x * w[3] + mix.bias
    for k in range(3):
        for i in range(36):
            want[:, P + i] += w[k] * x[:, P + torch.nonzero(ids[k] == ids[k, i]).flatten()].mean(1)
    with torch.no_grad():
        got = mix(x)
    assert torch.allclose(got, want, atol=1e-5)  # float32 sums of <= 6 terms of O(1): ~1e-6
    blk = Block(C, 2, 4.0, P + 36, False, 1e-5, torch.Generator().manual_seed(1), 8, mixer_groups=(P, task.groups))
    assert not hasattr(blk, "self_attn") and not hasattr(blk, "mlp_t")

    def changed(pos):
        x2 = x.clone()
        x2[:, pos] += 1.0
        with torch.no_grad():
            diff = (blk(x2, None) - blk(x, None)).abs().amax(dim=(0, 2))
        return torch.nonzero(diff > 1e-6).flatten().tolist()

    i = 14  # row 2, column 2: box 2 (rows 2-3, columns 0-2)
    peers = sorted(P + j for j in range(36) if any(task.groups[k][j] == task.groups[k][i] for k in range(3)))
    assert len(peers) == 13  # row 6 + column 6 + box 6, less row-box 3, column-box 2, row-column 1, plus all 1
    assert changed(P + i) == peers
    assert changed(0) == [0]
    spec = DataSpec(task.vocab_size, task.seq_len, 3, task.grid, task.groups)
    m = build_model(ModelConfig(hidden_size=32, num_heads=2, group_mixer=True, pos_encodings="none",
                                puzzle_emb_len=2), spec, seed=1)
    layer = m.inner.L_level.layers[0]
    assert hasattr(layer, "group_mixer") and not hasattr(layer, "self_attn") and m.inner.rotary_emb is None
    with pytest.raises(Exception, match="group_mixer: the puzzle family declares no groups"):
        build_model(ModelConfig(hidden_size=32, group_mixer=True, pos_encodings="none"),
                    DataSpec(vocab_size=6, seq_len=16, num_puzzle_identifiers=3), seed=1)
    with pytest.raises(Exception, match="groups cover 36 cells, but the puzzle has 16"):
        build_model(ModelConfig(hidden_size=32, group_mixer=True, pos_encodings="none"),
                    DataSpec(6, 16, 3, groups=task.groups), seed=1)
    with pytest.raises(Exception, match="one token mixer per block"):
        ModelConfig(group_mixer=True, conv_mixer=3)


@pytest.mark.parametrize("kw", [{}, {"latents": 2}, {"single_latent": True}])
def test_grad_cycles_sets_how_many_last_cycles_carry_gradient(kw):
    model = _small(H_cycles=3, L_cycles=2, grad_cycles=2, **kw).train()
    inner = model.inner
    g = torch.Generator().manual_seed(0)
    batch = {"inputs": torch.randint(0, 6, (2, 16), generator=g), "labels": torch.randint(1, 6, (2, 16), generator=g),
             "puzzle_identifiers": torch.tensor([0, 2])}
    calls = []
    f = inner.L_level.forward
    inner.L_level.forward = lambda h, inj, rope: calls.append(torch.is_grad_enabled()) or f(h, inj, rope)
    inner(inner.initial_state(2, torch.device("cpu")), batch)
    inner.L_level.forward = f
    assert calls == [False] * 3 + [True] * 6  # 3 cycles x (2 + 1) calls: the last 2 cycles with gradient
    with pytest.raises(Exception, match="grad_cycles"):
        ModelConfig(H_cycles=2, grad_cycles=3)
    with pytest.raises(Exception, match="grad_cycles"):
        ModelConfig(arch="hrm", grad_cycles=2)


def urm_fixture_steps(io) -> list[dict[str, torch.Tensor]]:
    return [{"logits": io[f"step{k}.logits"], "q_halt_logits": io[f"step{k}.q_halt_logits"],
             "state0": io[f"step{k}.hidden"]} for k in range(1, 4)]


def check_urm_against_fixture(model, batch, io) -> None:
    """URM's conv path is bfloat16 as official: the model within the bf16 rounding envelope of the
    official outputs, and one ConvSwiGLU call of each layer, on its real input at step 1, equal to
    the bf16-rounded math (tests/numerics.py); the halted flags exactly."""
    numerics.check_bf16_against_fixture(model, numerics.steps_of(batch), urm_fixture_steps(io), "urm")
    inputs = []
    hooks = [layer.mlp.register_forward_pre_hook(lambda mod, args: inputs.append((mod, args[0].clone())))
             for layer in model.inner.layers]
    steps = numerics.eval_steps(model, batch, 3)
    for h in hooks:
        h.remove()
    assert all(torch.equal(s["halted"], io[f"step{k}.halted"]) for k, s in enumerate(steps, start=1))
    for mlp, x in inputs[:len(model.inner.layers)]:
        numerics.check_bf16_swiglu(mlp, x)


def urm_fixture_model():
    """The official URM fixture's model with its weights (eval mode), its batch and outputs."""
    meta = json.loads(fixture_file("official/urm.json").read_text())
    c = meta["config"]
    cfg = ModelConfig(arch="urm", hidden_size=c["hidden_size"], num_heads=c["num_heads"], expansion=c["expansion"],
                      L_layers=c["num_layers"], H_cycles=c["H_cycles"], L_cycles=c["L_cycles"],
                      halt_max_steps=c["loops"], conv_swiglu=2, puzzle_emb_ndim=c["puzzle_emb_ndim"])
    model = build_model(cfg, DataSpec(c["vocab_size"], c["seq_len"], c["num_puzzle_identifiers"]))
    weights = load_file(str(fixture_file("official/urm.weights.safetensors")))
    assert "inner.init_hidden" in weights and "inner.layers.1.mlp.dwconv.weight" in weights
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    io = load_file(str(fixture_file("official/urm.io.safetensors")))
    batch = {k: io[f"batch.{k}"].long() for k in ("inputs", "labels", "puzzle_identifiers")}
    return model.eval(), batch, io


@pytest.mark.numerics
def test_urm_reproduces_the_official_outputs():
    """arch = "urm" (UbiquantAI/URM models/urm/urm.py): the official weights load 1:1 (layers.{i}.*,
    init_hidden, the depthwise conv) and give the official logits, halting logits and hidden state,
    3 ACT steps (tests/fixtures/official/urm.*, made by make_urm.py from the official code)."""
    model, batch, io = urm_fixture_model()
    check_urm_against_fixture(model, batch, io)
    with pytest.raises(Exception, match="urm"):
        ModelConfig(arch="urm", mlp_t=True)


def test_every_registered_architecture_declares_its_network_calls():
    """Each model class the registry can build (and its variants) overrides calls_per_step; the
    base class refuses, so an architecture that forgets it fails here, not with silent counts."""
    from recursa.models import MODELS, MultiLatentTRM, SingleLatentTRM
    from recursa.models.base import TokenModel
    for cls in (*MODELS.values(), SingleLatentTRM, MultiLatentTRM):
        assert issubclass(cls, TokenModel) and cls.calls_per_step is not TokenModel.calls_per_step, cls.__name__

    class Forgetful(TokenModel):
        pass
    with pytest.raises(NotImplementedError):
        Forgetful.calls_per_step(object())


def test_the_task_declares_the_grid_the_convolution_runs_over():
    """A grid-local mixer reads the grid from the task (DataSpec.grid: trainer and checkpoint
    loading take it from the dataset's / checkpoint's task); every family's grid covers its cells."""
    from recursa.tasks import TASKS
    from recursa.tasks.arc import ArcTask
    from recursa.tasks.maze import MazeTask
    from recursa.tasks.sorting import SortingTask
    from recursa.tasks.sudoku import SudokuTask
    for task in (SudokuTask(2, 3), SudokuTask(3, 3), MazeTask(15), ArcTask(), SortingTask()):
        assert task.grid is None or task.grid[0] * task.grid[1] == task.seq_len, task.name
    assert {t.name for t in (SudokuTask(), MazeTask(), ArcTask(), SortingTask())} == set(TASKS)
    assert SudokuTask(2, 3).grid == (6, 6) and MazeTask(15).grid == (15, 15) and SortingTask().grid is None
    cfg = ModelConfig(hidden_size=32, num_heads=2, conv_mixer=3, mlp_t=True, puzzle_emb_len=2)
    m = build_model(cfg, DataSpec(vocab_size=6, seq_len=16, num_puzzle_identifiers=3, grid=(4, 4)), seed=1)
    assert m.inner.L_level.layers[0].conv_mixer.grid == (2, 4)
    with pytest.raises(RecursaError, match="the task's grid is 2x8; the grid convolution needs a square grid"):
        build_model(cfg, DataSpec(vocab_size=6, seq_len=16, num_puzzle_identifiers=3, grid=(2, 8)))
    with pytest.raises(RecursaError, match="the task's grid is 3x3, but the puzzle has 16 cells"):
        build_model(cfg, DataSpec(vocab_size=6, seq_len=16, num_puzzle_identifiers=3, grid=(3, 3)))
