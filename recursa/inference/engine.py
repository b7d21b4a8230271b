"""The inference engine shared by ``eval``, ``solve`` and the demo: how long and how wide a trained
model thinks about a batch of puzzles.

A :class:`Protocol` says how:

- **depth**: every row runs ``max_steps`` supervision steps (the papers' protocol, with
  ``max_steps`` = the trained ``halt_max_steps``), or, ``adaptive``, a row stops at the first step
  where its halting confidence sigmoid(q_halt) reaches ``halt_threshold`` (or at ``max_steps``)
  and **leaves the batch**, so the remaining rows cost less: compute follows difficulty.
  ``halt_signal``: q_halt from the q head, or the log-odds of the model's probability of its own
  answer (:func:`recursa.models.base.answer_log_odds`). ``max_steps`` may exceed the training cap
  (think longer than trained).
- **width**: ``trajectories`` = K copies of every puzzle run side by side in one batch (not a
  loop over K). Copy 0 is the plain recursion; copies 1..K-1 get Gaussian noise of standard
  deviation ``noise`` added to their latent (``noise_on``: z_L, z_H or both; a one-state model's
  only state) at the start of every supervision step, drawn from ``seed``. A puzzle's answer is
  its copy with the highest halting confidence, except that where the family has a rule checker,
  a copy whose answer obeys the rules is preferred (a verified answer wins).
  Or ``views`` = K views of every puzzle (its family's symmetries, :meth:`Task.view`: a maze's
  rotations and reflections), run side by side in one batch; their answers are mapped back
  (:meth:`Task.unview`) and the answer most views agree on wins, ties to the most confident.
  The vote needs no rule checker and no noise: a model that is not exactly symmetric errs
  differently on different views, and the errors rarely agree.

The engine drives the inner model directly, exactly as the ACT wrapper does in evaluation (a
fresh state, the same data every step), so the default protocol reproduces the official
evaluation to the bit. It counts **network applications** (calls of a block stack, see
:func:`calls_per_step`) so that accuracy can be put against compute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import RecursaError
from ..models import ACT
from ..models.base import answer_log_odds


@dataclass(frozen=True)
class Protocol:
    max_steps: int
    adaptive: bool = False
    halt_threshold: float = 0.5
    trajectories: int = 1
    noise: float = 0.0
    noise_on: str = "z_L"
    seed: int = 0
    select: str = "valid"  # "valid": a verified answer first, then confidence; "confidence" only
    views: int = 1  # > 1: that many views of every puzzle (instead of trajectories), answer by vote
    #: What "confidence" reads: None the model's own (``model.halt_signal``), "head" the q head,
    #: "answer" the answer's probability (:func:`recursa.models.base.answer_log_odds`)
    halt_signal: str | None = None

    def __post_init__(self):
        if self.max_steps < 1:
            raise RecursaError(f"--max-steps {self.max_steps}: must be >= 1")
        if not 0.0 < self.halt_threshold < 1.0:
            raise RecursaError(f"--halt-threshold {self.halt_threshold}: must be in (0, 1)")
        if self.trajectories < 1:
            raise RecursaError(f"--trajectories {self.trajectories}: must be >= 1")
        if self.noise < 0 or not np.isfinite(self.noise):
            raise RecursaError(f"--noise {self.noise}: must be a finite number >= 0")
        if self.noise_on not in ("z_L", "z_H", "both"):
            raise RecursaError(f"--noise-on {self.noise_on!r}: choose z_L, z_H or both")
        if self.select not in ("valid", "confidence"):
            raise RecursaError(f"--select {self.select!r}: choose valid or confidence")
        if self.views < 1:
            raise RecursaError(f"--views {self.views}: must be >= 1")
        if self.halt_signal not in (None, "head", "answer"):
            raise RecursaError(f"--halt-signal {self.halt_signal!r}: choose head or answer")
        if self.views > 1 and self.trajectories > 1:
            raise RecursaError(f"--views {self.views} with --trajectories {self.trajectories}: choose one way of "
                               "thinking wider")
        if self.views > 1 and self.noise > 0:
            raise RecursaError(f"--views {self.views} with --noise {self.noise}: the views vote without noise "
                               "(noise is for --trajectories)")

    @classmethod
    def as_trained(cls, model: ACT, steps: int | None = None, **options) -> "Protocol":
        """A protocol of ``steps`` supervision steps, or (None or 0) as many as ``model`` was trained
        with (``halt_max_steps``): the one place that default is resolved."""
        return cls(max_steps=steps or model.halt_max_steps, **options)

    def describe(self) -> dict:
        d = asdict(self)
        d["depth"] = "adaptive" if self.adaptive else "fixed"
        d["selection"] = ("majority vote across views (mapped back), ties to halting confidence" if self.views > 1
                          else "plain recursion" if self.trajectories == 1 else
                          "valid answer first (task checker), then halting confidence" if self.select == "valid"
                          else "halting confidence")
        return d


def calls_per_step(model: ACT) -> int:
    """Network applications per supervision step and row: what the architecture declares
    (``calls_per_step`` of each model class in recursa/models/)."""
    return model.inner.calls_per_step()


@dataclass
class Snapshot:
    """The puzzles' current answers after supervision step ``step`` (rows that stopped keep
    their final answer). Per puzzle: ``preds`` (B, L), ``q_halt`` (B,) the halting logit of the
    chosen copy, ``steps`` (B,) steps run so far, ``done`` (B,) stopped, ``valid`` (B,) or None,
    ``trajectory`` (B,) the chosen copy (or view). ``calls``: network applications so far (all copies)."""

    step: int
    preds: torch.Tensor
    q_halt: torch.Tensor
    steps: torch.Tensor
    done: torch.Tensor
    valid: np.ndarray | None
    trajectory: torch.Tensor
    first_confident: torch.Tensor  # (B,) first step whose confidence reached the threshold (max_steps + 1: never)
    calls: int


def _noise_slots(n_state: int, noise_on: str) -> list[int]:
    if n_state == 1:
        return [0]
    if noise_on == "z_H":
        return [0]
    if noise_on == "z_L":
        return list(range(1, n_state))
    return list(range(n_state))


@torch.inference_mode()
def think(model: ACT, batch: dict[str, torch.Tensor], protocol: Protocol,
          check: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
          every_step: bool = True, task=None) -> Iterator[Snapshot]:
    """Run ``protocol`` on ``batch``; yield a :class:`Snapshot` after every supervision step
    (``every_step=False``: after the last one only). ``check(inputs, preds) -> valid`` is the
    family's rule checker, used to prefer verified answers among trajectories. ``task`` makes the
    views of ``protocol.views`` (:meth:`Task.view`; needed only then)."""
    model.eval()
    inner = model.inner
    p = protocol
    own = inner.cfg.halt_signal
    if p.halt_signal == "head" and own == "answer":
        raise RecursaError("--halt-signal head: this model was trained to halt on its answer's probability "
                           "(model.halt_signal = \"answer\"); its q head never learned to halt")
    recompute = p.halt_signal == "answer" and own != "answer"
    V = p.views
    K, M = (V if V > 1 else p.trajectories), p.max_steps
    B = batch["inputs"].shape[0]
    N = B * K
    device = batch["inputs"].device
    data = {k: (v.repeat_interleave(K, 0) if K > 1 else v) for k, v in batch.items()
            if k in ("inputs", "labels", "puzzle_identifiers")}
    if V > 1:
        have = getattr(task, "views", 1)
        if V > have:
            what = f"task {task.name} has {have}" if task is not None else "no task given: 1"
            raise RecursaError(f"--views {V}: {what} (its symmetries that map a puzzle to a puzzle)")
        inputs = batch["inputs"].cpu().numpy()
        viewed = np.stack([task.view(inputs, v) for v in range(V)], axis=1).reshape(N, -1)
        data["inputs"] = torch.from_numpy(viewed).to(device=device, dtype=batch["inputs"].dtype)
        check = None  # views vote; the rule checker is not consulted
    cps = calls_per_step(model)
    state = inner.initial_state(N, device)
    slots = _noise_slots(len(state), p.noise_on)
    noisy = (torch.arange(N, device=device) % K != 0) if K > 1 and p.noise > 0 else None
    gen = torch.Generator(device=device).manual_seed(p.seed) if noisy is not None else None
    active = torch.arange(N, device=device)  # rows still thinking (adaptive removes the finished ones)
    L = data["inputs"].shape[1]
    preds_all = torch.zeros(N, L, dtype=torch.long, device=device)
    q_all = torch.full((N,), float("-inf"), device=device)
    steps_all = torch.zeros(N, dtype=torch.long, device=device)
    done_all = torch.zeros(N, dtype=torch.bool, device=device)
    first_conf = torch.full((N,), M + 1, dtype=torch.long, device=device)
    logit_thr = float(np.log(p.halt_threshold / (1 - p.halt_threshold)))  # sigmoid(q) >= thr  <=>  q >= logit
    if p.select == "confidence":
        check = None
    inputs_np = data["inputs"].cpu().numpy() if check is not None and K > 1 else None
    calls = 0
    for k in range(1, M + 1):
        sub = data if active.shape[0] == N else {name: v[active] for name, v in data.items()}
        if noisy is not None:
            rows = noisy[active] if active.shape[0] != N else noisy
            state = tuple(s + (torch.randn(s.shape, generator=gen, device=device, dtype=torch.float32)
                               * p.noise).to(s.dtype) * rows.view(-1, 1, 1)
                          if i in slots else s for i, s in enumerate(state))
        state, logits, q_halt, _ = inner(state, sub)
        calls += int(active.shape[0]) * cps
        preds = logits.argmax(-1)
        q = answer_log_odds(logits) if recompute else q_halt.float()
        confident = q >= logit_thr
        preds_all[active] = preds
        q_all[active] = q
        steps_all[active] = k
        first_conf[active] = torch.where(confident & (first_conf[active] > M), k, first_conf[active])
        stop = confident if p.adaptive else torch.zeros_like(confident)
        if k == M:
            stop = torch.ones_like(confident)
        done_all[active] = stop
        last = k == M
        if p.adaptive and not last:
            keep = ~stop
            if not bool(keep.all()):  # a host sync per step: the price of shrinking the batch
                active = active[keep]
                state = tuple(s[keep] for s in state)
                last = active.shape[0] == 0
        if every_step or last:
            if V > 1:
                yield _vote(k, preds_all, q_all, steps_all, done_all, first_conf, B, V, task, calls)
            else:
                yield _select(k, preds_all, q_all, steps_all, done_all, first_conf, B, K, check, inputs_np, calls)
        if last:
            return


def think_one(model: ACT, inputs: np.ndarray, protocol: Protocol, puzzle_identifier: int = 0) -> list[Snapshot]:
    """:func:`think` about one puzzle (``inputs``: its tokens): the snapshot after every step."""
    device = next(model.parameters()).device
    batch = {"inputs": torch.from_numpy(np.asarray(inputs, dtype=np.int64)[None]).to(device),
             "labels": torch.zeros(1, len(inputs), dtype=torch.int64, device=device),
             "puzzle_identifiers": torch.tensor([int(puzzle_identifier)], device=device)}
    return list(think(model, batch, protocol))


def _vote(k, preds_all, q_all, steps_all, done_all, first_conf, B, V, task, calls) -> Snapshot:
    """Map every view's answer back to its puzzle's frame; the answer that most views give wins,
    ties to the highest halting logit among them."""
    P = preds_all.cpu().numpy().reshape(B, V, -1)
    back = np.stack([task.unview(P[:, v], v) for v in range(V)], axis=1)  # (B, V, L)
    agree = (back[:, :, None, :] == back[:, None, :, :]).all(-1).sum(-1)  # (B, V): views giving the same answer
    q = q_all.view(B, V).cpu().numpy()
    pick = np.where(agree == agree.max(1, keepdims=True), q, -np.inf).argmax(1)
    rows = torch.from_numpy(np.arange(B) * V + pick).to(preds_all.device)
    preds = torch.from_numpy(np.ascontiguousarray(back[np.arange(B), pick])).to(preds_all.device, preds_all.dtype)
    return Snapshot(k, preds, q_all[rows], steps_all.view(B, V).max(1).values, done_all.view(B, V).all(1), None,
                    torch.from_numpy(pick).to(preds_all.device), first_conf[rows], calls)


def _select(k, preds_all, q_all, steps_all, done_all, first_conf, B, K, check, inputs_np, calls) -> Snapshot:
    if K == 1:
        return Snapshot(k, preds_all.clone(), q_all.clone(), steps_all.clone(), done_all.clone(), None,
                        torch.zeros(B, dtype=torch.long, device=preds_all.device), first_conf.clone(), calls)
    score = q_all.view(B, K).clone()
    valid = None
    if check is not None:
        ok = np.asarray(check(inputs_np, preds_all.cpu().numpy()), dtype=bool)
        valid_t = torch.from_numpy(ok).to(score.device).view(B, K)
        score = torch.where(valid_t, score + 1e9, score)  # a verified answer wins, then confidence
    pick = score.argmax(1)
    rows = torch.arange(B, device=pick.device) * K + pick
    if check is not None:
        valid = ok[rows.cpu().numpy()]
    return Snapshot(k, preds_all[rows], q_all[rows], steps_all.view(B, K).max(1).values, done_all.view(B, K).all(1),
                    valid, pick, first_conf[rows], calls)
