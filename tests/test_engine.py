"""The inference engine: the papers' protocol unchanged, adaptive halting (rows leave the batch),
thinking deeper than trained, K noisy trajectories batched with verified answers preferred, K
symmetric views batched with a majority vote, and the eval CLI's recursion curves."""

import json

import numpy as np
import pytest
import torch

from recursa.cli import main
from recursa.config import ModelConfig
from recursa.errors import RecursaError
from recursa.inference.engine import Protocol, calls_per_step, think
from recursa.models import DataSpec, build_model


def _model(**kw):
    cfg = dict(hidden_size=32, num_heads=2, L_layers=2, H_cycles=2, L_cycles=2, halt_max_steps=4,
               pos_encodings="rope", puzzle_emb_len=2)
    cfg.update(kw)
    model = build_model(ModelConfig(**cfg), DataSpec(vocab_size=6, seq_len=16, num_puzzle_identifiers=3), seed=1)
    with torch.no_grad():  # a halting head that says "done" at different steps for different rows
        model.inner.q_head.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
        model.inner.q_head.bias.fill_(0.0)
    return model.eval()


def _batch(B=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"inputs": torch.randint(0, 6, (B, 16), generator=g), "labels": torch.randint(1, 6, (B, 16), generator=g),
            "puzzle_identifiers": torch.randint(0, 3, (B,), generator=g)}


def _act_steps(model, batch, steps):
    """The official evaluation: the ACT wrapper's forward from a fresh carry, ``steps`` times."""
    out = []
    with torch.inference_mode():
        carry = model.initial_carry(batch)
        for _ in range(steps):
            carry, o = model(carry, batch)
            out.append({"preds": o["logits"].argmax(-1), "q_halt": o["q_halt_logits"]})
    return out


def test_default_protocol_is_the_official_evaluation():
    model, batch = _model(), _batch()
    ref = _act_steps(model, batch, model.halt_max_steps)
    snaps = list(think(model, batch, Protocol(max_steps=4)))
    assert len(snaps) == 4
    for r, s in zip(ref, snaps):
        assert torch.equal(r["preds"], s.preds) and torch.equal(r["q_halt"].float(), s.q_halt)
    assert snaps[-1].calls == 12 * 4 * calls_per_step(model) and calls_per_step(model) == 2 * 3


@pytest.mark.parametrize("kw", [dict(arch="trm"), dict(arch="trm", single_latent=True), dict(arch="trm", latents=3),
                                dict(arch="hrm"), dict(arch="baseline"), dict(arch="urm", conv_swiglu=2),
                                dict(arch="trm", L_cycles=3, H_cycles=1)])
def test_every_architecture_declares_the_network_calls_it_makes(kw):
    """calls_per_step is what the architecture declares (models/*.py); it must equal the stack calls
    one supervision step really makes, counted at the first block of every block stack."""
    from recursa.models.layers import Block
    model = _model(**kw)
    stacks = [m for m in model.inner.modules() if isinstance(m, torch.nn.ModuleList) and m and isinstance(m[0], Block)]
    calls = []
    hooks = [st[0].register_forward_hook(lambda *a: calls.append(1)) for st in stacks]
    try:
        list(think(model, _batch(4), Protocol(max_steps=1)))
    finally:
        for h in hooks:
            h.remove()
    assert stacks and len(calls) == calls_per_step(model) == model.inner.calls_per_step()


def test_adaptive_rows_stop_at_their_first_confident_step_and_leave_the_batch():
    """Each row's adaptive answer is its fixed-protocol answer at the step it stopped; the rows that
    stopped cost nothing afterwards; thinking deeper than trained works."""
    model, batch = _model(), _batch()
    M = 10  # beyond the trained 4
    fixed = list(think(model, batch, Protocol(max_steps=M)))
    thr = 0.6
    ad = list(think(model, batch, Protocol(max_steps=M, adaptive=True, halt_threshold=thr)))
    last = ad[-1]
    conf = torch.stack([torch.sigmoid(s.q_halt) for s in fixed])  # (M, B)
    reached = conf >= thr
    expect = torch.where(reached.any(0), reached.float().argmax(0) + 1, M)
    assert torch.equal(last.steps, expect)
    assert 1 < int(expect.min()) or int(expect.max()) > 1  # a mix of depths
    assert len(set(expect.tolist())) > 1
    for i in range(12):
        assert torch.equal(last.preds[i], fixed[int(expect[i]) - 1].preds[i])
    assert last.calls == int(expect.sum()) * calls_per_step(model) < fixed[-1].calls
    assert bool(last.done.all())


def test_trajectories_are_batched_noise_free_copy_zero_and_verified_answers_win():
    model, batch = _model(), _batch()
    plain = list(think(model, batch, Protocol(max_steps=4)))[-1]
    # K copies without noise think alike: the answer is the plain one, at K times the compute
    same = list(think(model, batch, Protocol(max_steps=4, trajectories=3)))[-1]
    assert torch.equal(same.preds, plain.preds) and same.calls == 3 * plain.calls
    noisy = list(think(model, batch, Protocol(max_steps=4, trajectories=4, noise=0.5, seed=3)))[-1]
    again = list(think(model, batch, Protocol(max_steps=4, trajectories=4, noise=0.5, seed=3)))[-1]
    assert torch.equal(noisy.preds, again.preds)  # seeded
    assert not torch.equal(noisy.trajectory, torch.zeros(12, dtype=torch.long))  # some noisy copy was more confident

    # a checker that accepts only answers whose first token is 5: such a copy wins over confidence
    def check(inputs, preds):
        return preds[:, 0] == 5
    ver = list(think(model, batch, Protocol(max_steps=4, trajectories=4, noise=0.5, seed=3), check=check))[-1]
    has_valid = ver.valid
    assert has_valid is not None and (ver.preds[torch.from_numpy(has_valid), 0] == 5).all()
    conf = list(think(model, batch, Protocol(max_steps=4, trajectories=4, noise=0.5, seed=3, select="confidence"),
                      check=check))[-1]
    assert torch.equal(conf.preds, noisy.preds) and conf.valid is None


def test_views_are_batched_mapped_back_and_the_most_common_answer_wins():
    """Each view's answer is the same protocol's answer on that view of the puzzle alone, mapped
    back; the puzzle's answer is the one most views give (ties: the most confident of them);
    with adaptive halting too (rows of a view leave the batch on their own)."""
    from recursa.tasks.maze import MazeTask
    task = MazeTask(4)  # 16 cells: the tiny model's sequence
    model, batch = _model(), _batch()
    plain = list(think(model, batch, Protocol(max_steps=4)))[-1]
    one = list(think(model, batch, Protocol(max_steps=4, views=1), task=task))[-1]
    assert torch.equal(one.preds, plain.preds)
    inputs = batch["inputs"].numpy()
    for kw in (dict(max_steps=4), dict(max_steps=6, adaptive=True, halt_threshold=0.6)):
        snaps = list(think(model, batch, Protocol(views=8, **kw), task=task))
        got = snaps[-1]
        answers, conf, calls = [], [], 0
        for v in range(8):
            b = dict(batch, inputs=torch.from_numpy(task.view(inputs, v)))
            s = list(think(model, b, Protocol(**kw)))[-1]
            answers.append(task.unview(s.preds.numpy(), v))
            conf.append(s.q_halt.numpy())
            calls += s.calls
        answers, conf = np.stack(answers, 1), np.stack(conf, 1)  # (B, 8, L), (B, 8)
        assert got.calls == calls and got.valid is None and bool(got.done.all())
        disagree = 0
        for i in range(12):
            counts = [sum(np.array_equal(answers[i, v], answers[i, w]) for w in range(8)) for v in range(8)]
            top = [v for v in range(8) if counts[v] == max(counts)]
            best = max(top, key=lambda v: conf[i, v])
            assert int(got.trajectory[i]) == best and np.array_equal(got.preds[i].numpy(), answers[i, best])
            assert np.isclose(float(got.q_halt[i]), conf[i, best], atol=1e-5)
            disagree += max(counts) < 8
        assert disagree > 0  # a random model is not symmetric: the views do not all agree
        if kw.get("adaptive"):
            assert calls < 8 * 12 * 6 * calls_per_step(model)  # some rows stopped early
        else:
            assert len(snaps) == 4 and calls == 8 * plain.calls


@pytest.mark.parametrize("box", [(2, 2), (3, 3), (2, 3)])
def test_sudoku_and_maze_views_map_solutions_to_solutions(box):
    from recursa.tasks.maze import MazeTask, generate_mazes
    from recursa.tasks.sudoku import SudokuTask
    task = SudokuTask(*box)
    N = box[0] * box[1]
    assert task.views == (8 if box[0] == box[1] else 4)
    base = np.arange(N * N)
    # a solved grid: the standard shifted pattern, (r * c_box + r // r_box + c) % N, as tokens
    r, c = base // N, base % N
    sol = ((r % box[0]) * box[1] + r // box[0] + c) % N + 1
    enc = task.sudoku.encode(sol[None].astype(np.int8))
    assert task.check(enc, enc).all()
    for v in range(task.views):
        seen = task.view(enc, v)
        assert task.check(seen, seen).all() and np.array_equal(task.unview(seen, v), enc)
    assert len({task.view(enc, v).tobytes() for v in range(task.views)}) == task.views
    q, a = generate_mazes(np.random.default_rng(0), 6, size=9, min_path=10)
    maze = MazeTask(9)
    for v in range(8):
        assert maze.check(maze.view(q.reshape(6, -1), v), maze.view(a.reshape(6, -1), v)).all()
        assert np.array_equal(maze.unview(maze.view(a.reshape(6, -1), v), v), a.reshape(6, -1))


def test_views_errors():
    from recursa.tasks.sorting import SortingTask
    from recursa.tasks.maze import MazeTask
    model, batch = _model(), _batch()
    with pytest.raises(RecursaError, match="--views 9: task maze has 8"):
        list(think(model, batch, Protocol(max_steps=2, views=9), task=MazeTask(4)))
    with pytest.raises(RecursaError, match="--views 2: task sorting has 1"):
        list(think(model, batch, Protocol(max_steps=2, views=2), task=SortingTask(16)))
    with pytest.raises(RecursaError, match="--views 2: no task"):
        list(think(model, batch, Protocol(max_steps=2, views=2)))


@pytest.mark.parametrize("bad", [dict(max_steps=0), dict(max_steps=2, halt_threshold=1.0),
                                 dict(max_steps=2, trajectories=0), dict(max_steps=2, noise=-1.0),
                                 dict(max_steps=2, noise_on="z"), dict(max_steps=2, select="best"),
                                 dict(max_steps=2, views=0), dict(max_steps=2, views=2, trajectories=2),
                                 dict(max_steps=2, views=2, noise=0.3)])
def test_protocol_errors(bad):
    with pytest.raises(RecursaError):
        Protocol(**bad)


def test_eval_cli_adaptive_curve_plot_and_json(tmp_path, tiny_data, capsys):
    from recursa.training.trainer import fit

    from .conftest import tiny_config
    fit(tiny_config(tiny_data, tmp_path / "run", steps=30), progress=False, log=lambda *a: None)
    out, png = tmp_path / "c.json", tmp_path / "c.png"
    assert main(["eval", str(tmp_path / "run"), "--data", str(tiny_data), "--curve", "--max-steps", "12",
                 "--plot", str(png), "--json", str(out), "--per-puzzle"]) == 0
    res = json.loads(out.read_text())
    assert len(res["exact_by_step"]) == len(res["valid_by_step"]) == len(res["calls_by_step"]) == 12
    assert res["protocol"]["max_steps"] == 12 and res["trained_steps"] == 3 and res["mean_steps"] == 12
    assert sum(res["halt_histogram"]) == res["n"] == 40 and len(res["halt_histogram"]) == 13
    assert len(res["per_puzzle"]["steps"]) == 40 and res["network_calls"] == res["calls_by_step"][-1]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["eval", str(tmp_path / "run"), "--data", str(tiny_data), "--adaptive", "--max-steps", "12",
                 "--json", str(out)]) == 0
    ad = json.loads(out.read_text())
    assert ad["protocol"]["adaptive"] and ad["mean_steps"] <= 12 and ad["network_calls"] <= res["network_calls"]
    assert abs(ad["mean_steps"] * ad["n"] * 6 - ad["network_calls"]) < 1e-6  # 2 cycles x (2 + 1) per step
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--data", str(tiny_data), "--views", "8", "--json", str(out)]) == 0
    vw = json.loads(out.read_text())
    assert vw["protocol"]["views"] == 8 and vw["network_calls"] == 8 * vw["n"] * 3 * 6
    assert "8 views, majority vote" in capsys.readouterr().out
    for argv, msg in ((["--steps", "4", "--max-steps", "8"], "not both"), (["--plot", str(png)], "add --curve"),
                      (["--trajectories", "4"], "without --noise"), (["--halt-threshold", "2"], "--halt-threshold 2"),
                      (["--views", "9"], "--views 9: task sudoku has 8")):
        assert main(["eval", str(tmp_path / "run"), "--data", str(tiny_data), *argv]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err


def test_a_family_without_puzzle_embeddings_has_nothing_to_adapt(tmp_path, tiny_data, capsys):
    from recursa.training.trainer import fit

    from .conftest import tiny_config
    fit(tiny_config(tiny_data, tmp_path / "run", steps=2), progress=False, log=lambda *a: None)
    (tmp_path / "t.json").write_text("{}")
    assert main(["adapt", str(tmp_path / "run"), "--tasks", str(tmp_path / "t.json"), "--out", str(tmp_path / "o"),
                 "--data-out", str(tmp_path / "d")]) == 2
    assert "nothing to adapt" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()
