"""Dataset layout, validation errors, determinism of builds and of the sampler."""

import json

import numpy as np
import pytest

from recursa.data.dataset import TrainSampler, iter_eval
from recursa.data.format import load_split
from recursa.errors import RecursaError
from recursa.tasks import build_sorting, build_sudoku


def _arrays(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_builds_are_byte_identical_for_the_same_seed(tmp_path):
    for i in range(2):
        build_sudoku(tmp_path / f"a{i}", box_rows=2, box_cols=3, num_train=20, num_test=5, num_aug=2, seed=4, log=lambda *a: None)
    assert _arrays(tmp_path / "a0") == _arrays(tmp_path / "a1")
    build_sudoku(tmp_path / "b", box_rows=2, box_cols=3, num_train=20, num_test=5, num_aug=2, seed=5, log=lambda *a: None)
    assert _arrays(tmp_path / "a0") != _arrays(tmp_path / "b")


def test_official_layout_and_groups(tiny_data):
    train = load_split(tiny_data, "train")
    meta = json.loads((tiny_data / "train" / "dataset.json").read_text())
    assert meta["sets"] == ["all"] and meta["total_groups"] == 300 and meta["seq_len"] == 16
    assert train.inputs.shape == (1200, 16) and list(train.group_indices[:3]) == [0, 4, 8]
    assert json.loads((tiny_data / "identifiers.json").read_text()) == ["<blank>"]
    test = load_split(tiny_data, "test")
    # Held out: no test puzzle is a training view.
    train_set = {r.tobytes() for r in np.asarray(train.inputs)}
    assert not any(r.tobytes() in train_set for r in np.asarray(test.inputs))


def test_sampler_is_seeded_and_resumable(tiny_data):
    split = load_split(tiny_data, "train")
    a, b = TrainSampler(split, 32, seed=1), TrainSampler(split, 32, seed=1)
    for _ in range(5):
        x, y = a.next_batch(), b.next_batch()
        assert all(np.array_equal(x[k], y[k]) for k in x)
    state = json.loads(json.dumps(a.state_dict()))
    c = TrainSampler(split, 32, seed=1)
    c.load_state_dict(state)
    for _ in range(20):  # crosses an epoch boundary (300 groups / 32)
        x, y = a.next_batch(), c.next_batch()
        assert all(np.array_equal(x[k], y[k]) for k in x)
    assert a.epoch >= 1
    assert not np.array_equal(TrainSampler(split, 32, seed=2).next_batch()["inputs"], TrainSampler(split, 32, seed=1).next_batch()["inputs"])


def test_labels_ignore_id_is_remapped(tmp_path):
    build_sorting(tmp_path / "s", length=5, num_train=40, num_test=10, num_aug=1, log=lambda *a: None)
    split = load_split(tmp_path / "s", "test")
    _, batch = next(iter_eval(split, 4))
    assert (batch["labels"] >= 1).all()  # sorting has no ignore id: nothing remapped
    tr = load_split(tmp_path / "s", "train")
    assert tr.num_examples == 80 and tr.num_groups == 40


@pytest.mark.parametrize("damage,msg", [
    (lambda d: (d / "train" / "dataset.json").unlink(), "dataset.json: missing"),
    (lambda d: (d / "train" / "dataset.json").write_text("{"), "invalid JSON"),
    (lambda d: (d / "train" / "all__labels.npy").unlink(), "all__labels.npy: missing"),
    (lambda d: (d / "train" / "all__inputs.npy").write_bytes((d / "train" / "all__inputs.npy").read_bytes()[:300]), "all__inputs.npy: unreadable"),
    (lambda d: np.save(d / "train" / "all__inputs.npy", np.zeros((3, 5), np.int32)), "shape"),
    (lambda d: np.save(d / "train" / "all__puzzle_identifiers.npy", np.full(300 * 4, 9, np.int32)), "ids outside"),
    (lambda d: _set_meta(d, vocab_size=3), "outside the vocabulary"),
])
def test_damaged_dataset_gets_a_clear_error(tmp_path, damage, msg):
    d = tmp_path / "d"
    build_sudoku(d, box_rows=2, box_cols=2, num_train=300, num_test=5, num_aug=3, log=lambda *a: None)
    damage(d)
    with pytest.raises(RecursaError, match=msg):
        load_split(d, "train")


def _set_meta(d, **kw):
    p = d / "train" / "dataset.json"
    meta = json.loads(p.read_text())
    meta.update(kw)
    p.write_text(json.dumps(meta))


def test_missing_directory(tmp_path):
    with pytest.raises(RecursaError, match="dataset directory not found"):
        load_split(tmp_path / "nope", "train")


def test_hrm_built_and_multi_set_datasets_load(tiny_data, tmp_path):
    """HRM's builders write dataset.json without `total_puzzles` (which TRM's own loader then
    rejects); recursa reads both. Several `sets` are concatenated with shifted CSR offsets."""
    import shutil
    d = tmp_path / "hrm"
    shutil.copytree(tiny_data, d)
    meta_path = d / "train" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    assert "total_puzzles" in meta  # recursa writes the TRM form
    del meta["total_puzzles"]
    meta_path.write_text(json.dumps(meta))
    ref = load_split(tiny_data, "train")
    hrm = load_split(d, "train")
    assert np.array_equal(np.asarray(hrm.inputs), np.asarray(ref.inputs))
    # Split the single set in two: the loader must give back the same split.
    src = d / "train"
    pi, gi = np.load(src / "all__puzzle_indices.npy"), np.load(src / "all__group_indices.npy")
    g_cut = 100
    p_cut = int(gi[g_cut])
    e_cut = int(pi[p_cut])
    arrays = {f: np.load(src / f"all__{f}.npy") for f in ("inputs", "labels", "puzzle_identifiers")}
    parts = {"a": (slice(0, e_cut), slice(0, p_cut), pi[:p_cut + 1], gi[:g_cut + 1]),
             "b": (slice(e_cut, None), slice(p_cut, None), pi[p_cut:] - e_cut, gi[g_cut:] - p_cut)}
    for name, (es, ps, p_idx, g_idx) in parts.items():
        np.save(src / f"{name}__inputs.npy", arrays["inputs"][es])
        np.save(src / f"{name}__labels.npy", arrays["labels"][es])
        np.save(src / f"{name}__puzzle_identifiers.npy", arrays["puzzle_identifiers"][ps])
        np.save(src / f"{name}__puzzle_indices.npy", p_idx)
        np.save(src / f"{name}__group_indices.npy", g_idx)
    meta["sets"] = ["a", "b"]
    meta_path.write_text(json.dumps(meta))
    two = load_split(d, "train")
    for f in ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices"):
        assert np.array_equal(np.asarray(getattr(two, f)), np.asarray(getattr(ref, f))), f
