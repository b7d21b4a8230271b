"""Training: the loss goes down, resume is exact, optimisers and schedule behave."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from recursa.training.optim import AdamATan2, lr_at
from recursa.training.trainer import Trainer, fit

from .conftest import tiny_config


def _mean_loss(run, first: bool):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "train/loss" in r]
    return rows[0]["train/loss"] if first else rows[-1]["train/loss"]


@pytest.mark.parametrize("model", [{}, {"arch": "baseline", "halt_max_steps": 1},
                                   {"arch": "baseline", "baseline_layers": 3},
                                   {"arch": "hrm", "H_layers": 1, "q_continue": True},
                                   {"mlp_t": False, "pos_encodings": "learned", "puzzle_emb_len": 0},
                                   {"mlp_t": False, "pos_encodings": "rope", "forward_dtype": "bfloat16"},
                                   {"single_latent": True}, {"latents": 3, "L_cycles": 3}, {"q_continue": True},
                                   {"conv_swiglu": 2}, {"grad_cycles": 2},
                                   {"arch": "urm", "mlp_t": False, "pos_encodings": "rope", "conv_swiglu": 2}],
                         ids=["trm-mlp", "baseline-one-pass", "baseline-carried", "hrm-q-learning",
                              "trm-att-learned-pos", "trm-att-rope-bf16", "trm-single-latent", "trm-multi-latent",
                              "trm-continue-loss", "trm-conv-swiglu", "trm-grad-2-cycles", "urm"])
def test_thirty_cpu_steps_lower_the_loss(tiny_data, tmp_path, model):
    from recursa import config
    cfg = config.replace(tiny_config(tiny_data, tmp_path / "run", steps=30, log_interval=10), model=model)
    fit(cfg, progress=False, log=lambda *a: None)
    assert _mean_loss(tmp_path / "run", False) < _mean_loss(tmp_path / "run", True) * 0.95


def _final_state(run):
    ckpt = run / (run / "latest").read_text().strip()
    return load_file(str(ckpt / "train_state.safetensors")), json.loads((ckpt / "train_state.json").read_text())


@pytest.mark.numerics
@pytest.mark.parametrize("optimizer", ["adam_atan2", "adamw", "muon"])
def test_interrupted_and_resumed_run_is_bit_identical(tiny_data, tmp_path, optimizer):
    kw = dict(optimizer=optimizer, ema_rate=0.9, log_interval=5)
    fit(tiny_config(tiny_data, tmp_path / "full", steps=24, **kw), progress=False, log=lambda *a: None)
    # The same run, stopped after 11 steps (a checkpoint), then resumed in a fresh Trainer.
    fit(tiny_config(tiny_data, tmp_path / "split", steps=11, **kw), progress=False, log=lambda *a: None)
    fit(tiny_config(tiny_data, tmp_path / "split", steps=24, **kw), resume=True, progress=False, log=lambda *a: None)
    full, full_json = _final_state(tmp_path / "full")
    split, split_json = _final_state(tmp_path / "split")
    assert full.keys() == split.keys()
    assert any(k.startswith("carry.") for k in full) and any(k.startswith("ema.") for k in full)
    for k in full:
        assert torch.equal(full[k], split[k]), k
    assert full_json["sampler"] == split_json["sampler"] and full_json["step"] == split_json["step"] == 24


def test_resume_refuses_a_different_model(tiny_data, tmp_path):
    from recursa import config
    from recursa.errors import RecursaError
    fit(tiny_config(tiny_data, tmp_path / "r", steps=3), progress=False, log=lambda *a: None)
    cfg = config.replace(tiny_config(tiny_data, tmp_path / "r", steps=6), model={"hidden_size": 64})
    with pytest.raises(RecursaError, match="model"):
        Trainer(cfg, resume=True, progress=False)
    with pytest.raises(RecursaError, match="already has checkpoints"):
        Trainer(tiny_config(tiny_data, tmp_path / "r"), progress=False)


@pytest.mark.numerics
def test_adam_atan2_matches_the_update_rule():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5))
    ref = p.detach().clone().double()
    opt = AdamATan2([p], lr=0.1, betas=(0.9, 0.95), weight_decay=0.5)
    m = torch.zeros(5, dtype=torch.float64)
    v = torch.zeros(5, dtype=torch.float64)
    for t in range(1, 4):
        g = torch.randn(5)
        p.grad = g.clone()
        opt.step()
        g = g.double()
        ref = ref * (1 - 0.1 * 0.5)
        m = 0.9 * m + 0.1 * g
        v = 0.95 * v + 0.05 * g * g
        ref = ref - 0.1 * torch.atan2(m / (1 - 0.9 ** t), v.sqrt() / math.sqrt(1 - 0.95 ** t))
    np.testing.assert_allclose(p.detach().numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.numerics
def test_orthogonalize_gives_the_polar_direction_of_a_matrix():
    """Muon's Newton-Schulz map (URM's table, 5 iterations; checked equal to URM's msign to 2e-6 when
    written): the result points along U V^T of the input (a = U S V^T), its singular values pulled
    from any scale to ~[0.3, 1.85] (the table's aggressive first steps, not converged to 1); tall
    matrices go through their transpose."""
    from recursa.training.optim import orthogonalize
    g = torch.Generator().manual_seed(0)
    for shape in ((16, 48), (48, 16), (32, 32)):
        a = torch.randn(*shape, generator=g) * torch.logspace(-1, 1, shape[1])  # condition ~100
        o = orthogonalize(a, 5)
        u, _, vh = torch.linalg.svd(a, full_matrices=False)
        polar = u @ vh
        cos = (o * polar).sum() / (o.norm() * polar.norm())
        sv = torch.linalg.svdvals(o)
        sa = torch.linalg.svdvals(a)
        assert o.shape == a.shape and cos > 0.88 and sv.max() < 1.9 and sv.min() > 0.2, (shape, cos, sv)
        assert sv.max() / sv.min() < (sa.max() / sa.min()) / 2  # the spread of singular values shrinks
        assert torch.allclose(orthogonalize(1e3 * a, 5), o, atol=1e-4)  # scale-free


@pytest.mark.numerics
def test_muon_matches_its_update_rule():
    """optimizer = "muon" (URM ARC-AGI-2): 2-D weights move by lr * sqrt(max(shape)) * 0.2 along the
    orthogonalised Nesterov momentum (input rounded to bfloat16), others by bias-corrected AdamW; both
    decay by (1 - lr * wd) first."""
    from recursa.training.optim import Muon, orthogonalize
    g = torch.Generator().manual_seed(1)
    w = torch.nn.Parameter(torch.randn(6, 10, generator=g))
    b = torch.nn.Parameter(torch.randn(10, generator=g))
    opt = Muon([w, b], lr=0.01, weight_decay=0.1, momentum=0.95, adamw_betas=(0.9, 0.95))
    rw, rb = w.detach().clone(), b.detach().clone().double()
    buf, m, v = torch.zeros(6, 10), torch.zeros(10, dtype=torch.float64), torch.zeros(10, dtype=torch.float64)
    for t in range(1, 4):
        gw, gb = torch.randn(6, 10, generator=g), torch.randn(10, generator=g)
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        buf = 0.95 * buf + gw
        rw = rw * (1 - 0.01 * 0.1) - 0.01 * math.sqrt(10) * 0.2 * orthogonalize((gw + 0.95 * buf).bfloat16(), 5)
        gb = gb.double()
        m, v = 0.9 * m + 0.1 * gb, 0.95 * v + 0.05 * gb * gb
        rb = rb * (1 - 0.01 * 0.1) - 0.01 * math.sqrt(1 - 0.95 ** t) / (1 - 0.9 ** t) * m / (v.sqrt() + 1e-8)
    torch.testing.assert_close(w.detach(), rw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.detach().numpy(), rb.numpy(), rtol=1e-5, atol=1e-6)


def test_muon_trains(tiny_data, tmp_path):
    fit(tiny_config(tiny_data, tmp_path / "run", steps=30, log_interval=10, optimizer="muon", lr=0.02),
        progress=False, log=lambda *a: None)
    assert _mean_loss(tmp_path / "run", False) < _mean_loss(tmp_path / "run", True) * 0.95


def test_sign_sgd_touches_only_batch_rows():
    from recursa.models.layers import PuzzleEmbedding
    from recursa.training.optim import SignSGDSparse
    emb = PuzzleEmbedding(5, 3).train()
    with torch.no_grad():
        emb.weights.fill_(1.0)
    ids = torch.tensor([1, 3, 1])
    out = emb(ids)
    (out * torch.tensor([[1.0, -1.0, 0.0]])).sum().backward()
    SignSGDSparse(emb, lr=0.1, weight_decay=0.5).step()
    w = emb.weights
    assert torch.equal(w[[0, 2, 4]], torch.ones(3, 3))
    expected = torch.tensor([1 * 0.95 - 0.1, 1 * 0.95 + 0.1, 0.95])
    assert torch.allclose(w[1], expected) and torch.allclose(w[3], expected)


def test_lr_schedule_warmup_then_cosine():
    assert lr_at(0, 1.0, 10, 100, 0.1) == 0.0
    assert lr_at(5, 1.0, 10, 100, 0.1) == 0.5
    assert lr_at(10, 1.0, 10, 100, 0.1) == 1.0
    assert abs(lr_at(100, 1.0, 10, 100, 0.1) - 0.1) < 1e-12
    assert lr_at(55, 1.0, 10, 100, 1.0) == 1.0  # lr_min_ratio 1: constant after warm-up


def test_depth_curriculum_runs_the_scheduled_depth_and_evaluates_at_full_depth(tiny_data, tmp_path, monkeypatch):
    """CGAR's curriculum: (H, L) = (1, 2) -> (2, 4) -> (3, 6) at 30% and 60% of training; the model
    runs that depth in the training step (counted network calls) and the [model] depth otherwise."""
    from recursa import config
    from recursa.device import to_device
    from recursa.training.methods import depth_at
    from recursa.training.trainer import Trainer
    cur = [[0.0, 1, 2], [0.3, 2, 4], [0.6, 3, 6]]
    assert [depth_at(cur, s, 10) for s in range(10)] == [(1, 2)] * 3 + [(2, 4)] * 3 + [(3, 6)] * 4
    cfg = config.replace(tiny_config(tiny_data, tmp_path / "run", steps=10, depth_curriculum=cur),
                         model={"H_cycles": 3, "L_cycles": 6})
    tr = Trainer(cfg, progress=False, log=lambda *a: None)
    calls = []
    level = tr.model.inner.L_level
    orig = level.forward
    monkeypatch.setattr(level, "forward", lambda *a, **k: calls.append(1) or orig(*a, **k))
    per_step = []
    for _ in range(10):
        n = len(calls)
        tr.train_step(to_device(tr.sampler.next_batch(), tr.device))
        per_step.append(len(calls) - n)
    assert per_step == [1 * 3] * 3 + [2 * 5] * 3 + [3 * 7] * 4  # H x (L + 1) network calls
    assert tr.model.inner.depth is None and (tr.model.inner.H_cycles, tr.model.inner.L_cycles) == (3, 6)
    tr.close()
    with pytest.raises(Exception, match="depth_curriculum"):
        config.replace(cfg, train={"depth_curriculum": [[0.3, 1, 2]]})


def test_step_weights_and_loss_on_the_last_step_only():
    """CGAR's 0.7^(s-1) weights and RSM's loss on the final step: the loss is the weighted sum of
    the rows' losses; halting losses keep every row."""
    from recursa.training.losses import act_loss
    g = torch.Generator().manual_seed(0)
    B, L, V = 4, 6, 5
    out = {"logits": torch.randn(B, L, V, generator=g), "q_halt_logits": torch.randn(B, generator=g),
           "q_continue_logits": torch.randn(B, generator=g)}
    labels = torch.randint(1, V, (B, L), generator=g)
    halted = torch.tensor([True, False, True, False])
    steps = torch.tensor([1, 2, 3, 4])
    rows = [act_loss({k: v[i:i + 1] for k, v in out.items()}, labels[i:i + 1], halted[i:i + 1], steps[i:i + 1])[1]
            for i in range(B)]
    w = 0.7 ** (steps - 1).float()
    total, m = act_loss(out, labels, halted, steps, token_weights=w * halted.float(), halt_weights=w)
    expect = sum(float(w[i]) * (float(halted[i]) * rows[i]["lm_loss"] + 0.5 * rows[i]["q_halt_loss"]) for i in range(B))
    assert total.item() == pytest.approx(float(expect), rel=1e-6)
    plain, _ = act_loss(out, labels, halted, steps)
    assert plain.item() == pytest.approx(sum(float(r["lm_loss"] + 0.5 * r["q_halt_loss"]) for r in rows), rel=1e-6)


def test_nearest_answer_trains_each_maze_on_its_shortest_path_of_least_loss(tmp_path, monkeypatch):
    """train.nearest_answer: the loss gets, per row, the shortest path of least loss under the step's
    own logits (not the dataset's path), always a valid shortest path; off, the dataset's labels.
    Families with one answer per puzzle refuse the option."""
    from recursa import config
    from recursa.device import to_device
    from recursa.errors import RecursaError
    from recursa.tasks.maze import MazeTask, build_maze
    from recursa.training import trainer as trainer_mod
    from recursa.training.losses import log_stablemax
    data = tmp_path / "maze"
    build_maze(data, size=9, min_path=8, num_train=64, num_test=8, loop_prob=0.3, seed=1, log=lambda *a: None)
    seen = []
    real = trainer_mod.act_loss

    def spy(out, labels, *a, **k):
        seen.append((out["logits"].detach().clone(), labels.clone()))
        return real(out, labels, *a, **k)

    monkeypatch.setattr(trainer_mod, "act_loss", spy)
    task = MazeTask(9)
    for near in (True, False):
        cfg = config.replace(tiny_config(data, tmp_path / f"run{near}", steps=4, nearest_answer=near),
                             model={"puzzle_emb_len": 0, "mlp_t": False, "pos_encodings": "rope"})
        tr = Trainer(cfg, progress=False, log=lambda *a: None)
        differ = 0
        for _ in range(4):
            seen.clear()
            tr.train_step(to_device(tr.sampler.next_batch(), tr.device))
            logits, labels = seen[0]
            inputs, given = tr.carry.data["inputs"].numpy(), tr.carry.data["labels"].numpy()
            if near:
                lp = log_stablemax(logits.double()).numpy()
                assert (labels.numpy() == task.nearest_answers(inputs, given, lp)).all()
                assert task.check(inputs, labels.numpy()).all()
                differ += int((labels.numpy() != given).any(1).sum())
            else:
                assert (labels.numpy() == given).all()
        tr.close()
        if near:
            assert differ > 0  # some mazes have several shortest paths, and another one was nearer
    from recursa.tasks import build_sudoku
    sud = tmp_path / "sudoku"
    build_sudoku(sud, box_rows=2, box_cols=2, num_train=20, num_test=4, num_aug=0, seed=0, log=lambda *a: None)
    with pytest.raises(RecursaError, match="nearest_answer.*one answer per puzzle"):
        Trainer(tiny_config(sud, tmp_path / "sud_run", nearest_answer=True), progress=False, log=lambda *a: None)


def test_stochastic_depth_draws_the_cycles_per_step_reproducibly(tiny_data, tmp_path, monkeypatch):
    """RSM's stochastic depth: with probability p a training step runs T' ~ U{1..H} cycles; the draw is
    a function of (seed, step); evaluation runs H."""
    from recursa import config
    from recursa.device import to_device
    from recursa.training.methods import stochastic_cycles
    from recursa.training.trainer import Trainer
    draws = [stochastic_cycles(0.5, 4, 3, s) for s in range(400)]
    assert draws == [stochastic_cycles(0.5, 4, 3, s) for s in range(400)]
    assert set(draws) == {1, 2, 3, 4} and 0.55 < draws.count(4) / 400 < 0.7  # 0.5 + 0.5 / 4 = 0.625
    assert all(stochastic_cycles(0.0, 4, 3, s) == 4 for s in range(50))
    cfg = config.replace(tiny_config(tiny_data, tmp_path / "run", steps=8), model={"H_cycles": 3,
                                                                                  "stochastic_depth": 1.0})
    tr = Trainer(cfg, progress=False, log=lambda *a: None)
    calls = []
    level = tr.model.inner.L_level
    orig = level.forward
    monkeypatch.setattr(level, "forward", lambda *a, **k: calls.append(1) or orig(*a, **k))
    for s in range(8):
        n = len(calls)
        tr.train_step(to_device(tr.sampler.next_batch(), tr.device))
        assert len(calls) - n == stochastic_cycles(1.0, 3, cfg.train.seed, s) * 3  # T' x (L + 1)
    assert tr.model.inner.depth is None
    tr.close()


def test_a_time_budget_counts_training_time_only_and_runs_the_cosine_over_it(tiny_data, tmp_path, monkeypatch):
    """train.max_time_s alone: evaluations (here slowed to 0.4 s each) are not counted against the
    budget, and the cosine decay runs over the training time (the last step at lr_min_ratio x lr)."""
    import time as time_mod
    evals = []
    original = Trainer.run_eval

    def slow_eval(self):
        evals.append(self.elapsed)
        time_mod.sleep(0.4)
        return original(self)

    monkeypatch.setattr(Trainer, "run_eval", slow_eval)
    cfg = tiny_config(tiny_data, tmp_path / "run", steps=0, max_time_s=1.5, eval_interval=3, log_interval=1,
                      lr_warmup_steps=2, lr_min_ratio=0.1, lr=1e-3)
    t0 = time_mod.perf_counter()
    fit(cfg, progress=False, log=lambda *a: None)
    wall = time_mod.perf_counter() - t0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "lr" in r]
    assert len(evals) >= 3 and wall > 1.5 + 0.4 * len(evals)
    assert 1.5 <= train_rows[-1]["elapsed_s"] < 1.5 + 0.4  # the last step crossed the budget; no eval time in it
    assert train_rows[-1]["lr"] == pytest.approx(1e-4)  # cosine finished: lr_min_ratio x lr
    assert train_rows[0]["lr"] == pytest.approx(0.5e-3, rel=0.05)  # warm-up step 1 of 2, at the cosine's start
    lrs = [r["lr"] for r in train_rows[2:]]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # decaying with time after the warm-up
    curve = [r for r in rows if "eval/exact_accuracy" in r]
    assert all("elapsed_s" in r for r in curve)  # the accuracy-time curve (recursa sweep reads it)


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_grad_clip_bounds_the_global_gradient_norm_at_the_optimiser_step(tiny_data, tmp_path, clip):
    """train.grad_clip (RSM: 1.0): the optimiser sees the network's gradient scaled to that global
    L2 norm when it is larger, unchanged otherwise; 0 (the official code) leaves it as it is."""
    from recursa.device import to_device
    cfg = tiny_config(tiny_data, tmp_path / "run", steps=4, grad_clip=clip)
    tr = Trainer(cfg, progress=False, log=lambda *a: None)
    seen = []
    step = tr.opt.step
    tr.opt.step = lambda *a, **k: seen.append(float(torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(p.grad) for p in tr.model.parameters() if p.grad is not None])))) or step(*a, **k)
    for _ in range(4):
        tr.train_step(to_device(tr.sampler.next_batch(), tr.device))
    tr.close()
    assert len(seen) == 4
    if clip:
        assert all(n == pytest.approx(clip, rel=1e-4) for n in seen)  # these gradients are far above 0.05
    else:
        assert all(n > 0.05 for n in seen)
    from recursa import config
    for bad in (float("nan"), -1.0):
        with pytest.raises(Exception, match="train.grad_clip"):
            config.replace(cfg, train={"grad_clip": bad})
