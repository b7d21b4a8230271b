"""Data-parallel training under torchrun (gloo on CPU): the same result as one process with the
same global batch, exact resume, the divisibility error; keep_best."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from recursa import config
from recursa.cli import main
from recursa.data.format import load_split
from recursa.models import DataSpec, build_model
from recursa.training.trainer import fit

from .conftest import tiny_config


def _write_config(tmp_path, data, **train):
    cfg = tiny_config(data, tmp_path / "unused", steps=12, log_interval=4, checkpoint_interval=6, **train)
    path = tmp_path / "cfg.toml"
    path.write_text(config.to_toml(cfg))
    return path


def torchrun(cfg_path, out, *extra, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "recursa", "train", str(cfg_path), "--quiet", "--set", f"train.out={out}", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


EPS32 = 2.0 ** -23  # float32's relative rounding unit


def initial_state(cfg_path) -> dict:
    """The weights a run of ``cfg_path`` starts from (the Trainer's model and EMA at step 0)."""
    cfg = config.load(cfg_path)
    m = load_split(cfg.train.data, "train").meta
    spec = DataSpec(vocab_size=int(m["vocab_size"]), seq_len=int(m["seq_len"]),
                    num_puzzle_identifiers=int(m["num_puzzle_identifiers"]))
    return build_model(cfg.model, spec, seed=cfg.train.seed).state_dict()


def training_differences(a: dict, b: dict, start: dict, keys) -> list[str]:
    """The tensors of two training states that differ by more than the float rounding of the same
    computation, measured against what training changed: for each tensor its displacement D (the
    largest change from the start: the initial weights for model and EMA tensors, zero for optimiser
    moments). Another computation (another batch, gradients not averaged, a rank's rows lost)
    changes every update by a fraction of its own size, so its states differ by the order of D
    (>= 0.46 D with a batch of 8 instead of 16); the same sums in another order differ by rounding
    grown through the steps (<= 1.4e-3 D over 12 steps); the bound is 1e-2 D, plus 16 float32
    units of the tensor's values (the EMA moves by 1 - rate of a step, so its rounding at its own
    scale is the larger term). The puzzle embeddings are trained by sign-SGD: an element moves by
    exactly +-lr a step, so a gradient element within rounding of zero may take the other sign in
    one run (a difference of 2 lr) while the others agree: at most 2 elements (or 1%) may differ, by
    at most 2 lr per step."""
    bad = []
    for k in keys:
        x, y = a[k], b[k]
        d = (x - y).abs()
        if k.endswith("puzzle_emb.weights"):
            if (d > 1e-6).sum().item() > max(2, 0.01 * d.numel()) or d.max().item() > 2 * 1e-2 * 12 + 1e-6:
                bad.append(k)
            continue
        name = k.split(".", 1)[1]
        x0 = start[name] if k.startswith(("model.", "ema.")) else torch.zeros_like(x)
        disp = (x - x0).abs().max().item()
        if d.max().item() > 1e-2 * disp + 16 * EPS32 * x.abs().max().item():
            bad.append(k)
    return bad


def assert_same_training(a: dict, b: dict, start: dict, keys) -> None:
    keys = list(keys)
    bad = training_differences(a, b, start, keys)
    assert not bad, f"{len(bad)} of {len(keys)} tensors differ beyond rounding: {bad[:5]}"


def _state(run, step=12):
    ckpt = run / "checkpoints" / f"step_{step:07d}"
    return load_file(str(ckpt / "train_state.safetensors")), json.loads((ckpt / "train_state.json").read_text())


@pytest.mark.numerics
def test_two_processes_end_where_one_process_ends(tiny_data, tmp_path):
    """2 gloo ranks x 8 rows = one process x 16 rows: parameters, EMA, optimiser moments and puzzle
    embeddings agree to the rounding of the same computation (and a run with another batch does
    not); sampler position, step and the saved (gathered) carry's puzzles agree exactly."""
    cfg_path = _write_config(tmp_path, tiny_data)
    fit(config.load(cfg_path, [f"train.out={tmp_path / 'one'}"]), progress=False, log=lambda *a: None)
    r = torchrun(cfg_path, tmp_path / "two")
    assert r.returncode == 0, r.stderr[-3000:]
    one, one_json = _state(tmp_path / "one")
    two, two_json = _state(tmp_path / "two")
    assert one.keys() == two.keys()
    assert any(k.startswith("model.inner.puzzle_emb") for k in one) and any(k.startswith("ema.") for k in one)
    keys = [k for k, v in one.items()
            if k.startswith(("model.", "ema.", "optim.")) and v.is_floating_point()]
    start = initial_state(cfg_path)
    assert_same_training(one, two, start, keys)
    # the bound tells computations apart: one process with a global batch of 8 instead of 16 is caught
    fit(config.load(cfg_path, [f"train.out={tmp_path / 'wrong'}", "train.batch_size=8"]), progress=False,
        log=lambda *a: None)
    wrong, _ = _state(tmp_path / "wrong")
    assert len(training_differences(one, wrong, start, keys)) > len(keys) // 2
    for k in one:
        if k.startswith("carry.data.") or k in ("carry.steps", "carry.halted"):
            assert torch.equal(one[k], two[k]), k  # the same puzzles at the same depth in every row
    assert one_json["sampler"] == two_json["sampler"] and one_json["step"] == two_json["step"] == 12
    assert (tmp_path / "two" / "metrics.jsonl").read_text().count("\n") == 3  # rank 0 alone logs


@pytest.mark.numerics
def test_a_torchrun_run_resumes_exactly(tiny_data, tmp_path):
    """Stopped at step 6 and resumed under torchrun: bit-identical to the uninterrupted 2-process run;
    a one-process checkpoint also continues on two processes (the carry is saved in row order)."""
    cfg_path = _write_config(tmp_path, tiny_data)
    full = torchrun(cfg_path, tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]
    part = torchrun(cfg_path, tmp_path / "split", "--set", "train.steps=6")
    assert part.returncode == 0, part.stderr[-3000:]
    rest = torchrun(cfg_path, tmp_path / "split", "--resume")
    assert rest.returncode == 0, rest.stderr[-3000:]
    a, a_json = _state(tmp_path / "full")
    b, b_json = _state(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert a_json["sampler"] == b_json["sampler"]
    # one process for 6 steps, then two processes
    fit(config.load(cfg_path, [f"train.out={tmp_path / 'mixed'}", "train.steps=6"]), progress=False, log=lambda *a: None)
    mixed = torchrun(cfg_path, tmp_path / "mixed", "--resume")
    assert mixed.returncode == 0, mixed.stderr[-3000:]
    c, _ = _state(tmp_path / "mixed")
    assert_same_training(a, c, initial_state(cfg_path), [k for k in a if k.startswith("model.") and a[k].is_floating_point()])


def test_batch_must_divide_over_the_processes(tiny_data, tmp_path):
    cfg_path = _write_config(tmp_path, tiny_data)
    r = torchrun(cfg_path, tmp_path / "odd", "--set", "train.batch_size=15")
    assert r.returncode != 0
    assert "train.batch_size = 15 does not divide over 2 processes" in r.stderr
    assert not (tmp_path / "odd" / "checkpoints").exists()


def test_keep_best_keeps_the_best_evaluation_next_to_the_latest(tiny_data, tmp_path, capsys):
    """keep_best: RUN/checkpoints/best holds the weights of the best evaluation so far (by the
    chosen metric); eval and solve take RUN/best; a resumed run knows the best value."""
    from recursa.inference import checkpoint
    from recursa.training.run_dir import read_best
    run = tmp_path / "run"
    cfg = tiny_config(tiny_data, run, steps=40, eval_interval=10, checkpoint_interval=10, keep_best="token_accuracy",
                      lr=3e-3)
    fit(cfg, progress=False, log=lambda *a: None)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["step"], r["eval/token_accuracy"]) for r in rows if "eval/token_accuracy" in r]
    assert [s for s, _ in evals] == [10, 20, 30, 40]
    best_step, best_value = max(evals, key=lambda e: (e[1], -e[0]))  # first step reaching the maximum
    meta = checkpoint.read_meta(run / "checkpoints" / "best")
    # tiny_data has no val/: evaluations (and so keep_best) read the test split, and the record says so
    assert meta["best"] == {"metric": "token_accuracy", "value": best_value, "step": best_step, "split": "test"}
    assert meta["step"] == best_step
    # RUN/best and RUN/latest name checkpoints for eval and solve
    assert checkpoint.resolve(run / "best") == run / "checkpoints" / "best"
    assert checkpoint.resolve(run / "latest") == run / "checkpoints" / "step_0000040"
    out = tmp_path / "e.json"
    assert main(["eval", str(run / "best"), "--data", str(tiny_data), "--limit", "20", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["token_accuracy"] == pytest.approx(best_value, abs=1e-9)
    capsys.readouterr()
    assert main(["solve", str(run / "best"), "--puzzle", "1..4.4..........", "--allow-multiple"]) == 0
    assert capsys.readouterr().out.strip()  # the answer
    # the best checkpoint is never pruned (keep_checkpoints = 2 keeps only the last two steps)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best", "step_0000030", "step_0000040"]
    # a resumed run starts from the recorded best and replaces it only when beaten
    assert read_best(run, "token_accuracy")["value"] == best_value
    capsys.readouterr()
    bad = tiny_config(tiny_data, tmp_path / "x", keep_best="nope", eval_interval=5)
    with pytest.raises(Exception, match="keep_best = 'nope'"):
        fit(bad, progress=False, log=lambda *a: None)
    with pytest.raises(Exception, match="needs evaluation"):
        fit(tiny_config(tiny_data, tmp_path / "y", keep_best="exact_accuracy", eval_interval=-1), progress=False)


def test_sparse_embedding_update_is_the_unique_based_one_without_a_host_sync():
    """Sorted fixed-slot sums give the same table as summing per unique id (batch order kept), and
    gathering the rows of several 'ranks' (with the 1/world gradient scale) gives the one-process
    update."""
    from recursa.models.layers import PuzzleEmbedding
    from recursa.training.optim import SignSGDSparse
    g = torch.Generator().manual_seed(0)
    for trial in range(25):
        n_ids, B, D = 7, 16, 5
        w0 = torch.randn(n_ids, D, generator=g)
        ids = torch.randint(0, n_ids, (B,), generator=g)
        grads = torch.randn(B, D, generator=g)
        uniq, inv = ids.unique(return_inverse=True)
        summed = torch.zeros(len(uniq), D).index_add_(0, inv, grads)
        ref = w0.clone()
        ref[uniq] = w0[uniq].mul(1 - 0.1 * 0.5).add(torch.sign(summed), alpha=-0.1)

        def run(rows, gather=None, scale=1.0):
            emb = PuzzleEmbedding(n_ids, D)
            emb.weights.copy_(w0)
            emb.train()
            with torch.enable_grad():
                emb(ids[rows])
            emb.local_weights.grad = grads[rows] / scale  # scale 0.5: the 2x gradient of a rank
            SignSGDSparse(emb, 0.1, 0.5, gather=gather, grad_scale=scale).step()
            return emb.weights

        assert torch.equal(run(slice(None)), ref), trial
        # two ranks: each holds half the rows with twice the gradient (its loss / its own 8 rows);
        # rank 0's view: gather appends what rank 1 contributes (its ids, its scaled gradients)
        def gather(x):
            other = ids[8:] if x.dtype == torch.long else (grads[8:] * 2) * 0.5
            return torch.cat([x, other])

        assert torch.equal(run(slice(0, 8), gather=gather, scale=0.5), ref), trial


def test_compiled_training_step_trains_like_the_plain_module(tiny_data, tmp_path, monkeypatch):
    """train.compile: torch.compile on the training step (it does compile); the checkpoint is the
    plain module's, and trains like it.
    Inductor's cache of its own (its key leaves out ATEN_CPU_CAPABILITY: a kernel generated with
    AVX-512 vectors is otherwise reused, and fails to build, under an emulated plain CPU)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    plain, comp = tmp_path / "plain", tmp_path / "compiled"
    fit(tiny_config(tiny_data, plain, steps=6), progress=False, log=lambda *a: None)
    from torch._dynamo.utils import counters
    counters.clear()
    fit(tiny_config(tiny_data, comp, steps=6, compile=True), progress=False, log=lambda *a: None)
    # it compiled (no silent fall back to eager): graphs captured, their backward through AOTAutograd,
    # kernels from inductor (generated or from its cache)
    assert counters["frames"]["ok"] >= 1 and counters["stats"]["unique_graphs"] >= 1, dict(counters["frames"])
    assert counters["aot_autograd"]["ok"] >= 1, dict(counters["aot_autograd"])
    assert sum(v for k, v in counters["inductor"].items() if k.startswith("fxgraph_cache")) >= 1, dict(counters["inductor"])
    a = load_file(str(plain / "checkpoints" / "step_0000006" / "model.safetensors"))
    b = load_file(str(comp / "checkpoints" / "step_0000006" / "model.safetensors"))
    assert a.keys() == b.keys() and not any("_orig_mod" in k for k in b)
    for k in a:
        assert (a[k] - b[k]).abs().max() <= 1e-4, k


def test_gpu_check_script_parses_and_covers_every_preset():
    """The prepared GPU check is valid bash and benches every preset (its CPU dry run is in
    docs/benchmarks.md; it needs a CUDA machine to mean anything)."""
    from recursa.tools.bench import PRESETS

    from .conftest import REPO
    script = REPO / "scripts" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    line = next(x for x in text.splitlines() if x.startswith("PRESETS="))
    assert set(line.split(":-")[1].rstrip("}").split()) == set(PRESETS)
    assert "torch.distributed.run" in text and "--compile" in text


@pytest.mark.numerics
def test_prefetching_the_next_batch_changes_nothing_and_resumes_exactly(tiny_data, tmp_path, monkeypatch):
    """With prefetch (on GPUs the next batch is copied while the step runs) the sampler has drawn
    one batch ahead; a checkpoint records the position before that draw, so runs with and without
    prefetch, interrupted or not, end bit-identical."""
    import recursa.training.trainer as trainer_mod
    fit(tiny_config(tiny_data, tmp_path / "plain", steps=12), progress=False, log=lambda *a: None)
    monkeypatch.setattr(trainer_mod, "PREFETCH_DEVICES", ("cpu",))
    fit(tiny_config(tiny_data, tmp_path / "pre", steps=12), progress=False, log=lambda *a: None)
    fit(tiny_config(tiny_data, tmp_path / "split", steps=5), progress=False, log=lambda *a: None)
    fit(tiny_config(tiny_data, tmp_path / "split", steps=12), resume=True, progress=False, log=lambda *a: None)
    a, a_json = _state(tmp_path / "plain")
    for other in ("pre", "split"):
        b, b_json = _state(tmp_path / other)
        assert a_json["sampler"] == b_json["sampler"], other
        for k in a:
            assert torch.equal(a[k], b[k]), (other, k)
