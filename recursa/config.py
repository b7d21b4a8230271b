"""Typed, strictly parsed configuration: TOML recipes plus dotted ``--set key=value`` overrides.

A run config has three sections, each a frozen dataclass whose field docstrings (the ``#:``
comments) document the recipe keys:

    [model]   architecture (see ModelConfig)
    [train]   data, optimisation, schedule, logging and checkpointing (see TrainConfig)
    [eval]    held-out evaluation during training (see EvalConfig)

Unknown keys, wrong types and out-of-range values are errors that name the key. The resolved
config is written into every checkpoint so a run can be reproduced from it.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from . import storage
from .errors import RecursaError

CONFIG_VERSION = 1

#: Upper bounds of the model's sizes: far beyond anything trainable, low enough that a typo
#: (hidden_size = 2**40) is an error naming the key instead of an allocator crash.
MODEL_LIMITS = {"hidden_size": 65536, "L_layers": 1024, "H_layers": 1024, "baseline_layers": 1024,
                "H_cycles": 10000, "L_cycles": 10000, "halt_max_steps": 100000, "puzzle_emb_len": 65536,
                "puzzle_emb_ndim": 65536, "ffn_multiple": 65536, "latents": 64, "conv_swiglu": 64,
                "conv_mixer": 64, "grad_cycles": 10000}
MAX_EXPANSION = 64.0
MAX_BATCH_SIZE = 1 << 20
MAX_THREADS = 4096
MAX_SEED = (1 << 63) - 1


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    #: "trm" (Tiny Recursive Model), "hrm" (Hierarchical Reasoning Model: separate H and L networks,
    #: 1-step gradient), "baseline" (the official transformer baseline: one block stack applied
    #: once per supervision step, no cycles; with halt_max_steps = 1 a plain non-recursive model) or
    #: "urm" (Universal Reasoning Model, arXiv 2512.14693: one state, L_layers shared blocks with
    #: ConvSwiGLU (conv_swiglu = 2), [h <- blocks(h + x)] x L_cycles per cycle).
    arch: Literal["trm", "hrm", "baseline", "urm"] = "trm"
    #: Width D of every token state.
    hidden_size: int = 512
    #: Attention heads (ignored by the MLP token mixer).
    num_heads: int = 8
    #: SwiGLU expansion factor (inner width = round(expansion*n*2/3) up to a multiple of ffn_multiple).
    expansion: float = 4.0
    #: The SwiGLU inner width is rounded up to a multiple of this. 256 is the official rule (keep it
    #: for official recipes and checkpoints); small CPU models gain from a small multiple: at hidden
    #: 64 the channel MLP is 256 wide with 256 and 176 with 16, the MLP token mixer over 36
    #: positions 256 and 96.
    ffn_multiple: int = 256
    #: Blocks in the one shared network f (TRM), or in the low-level network (HRM).
    L_layers: int = 2
    #: Blocks in the high-level network (HRM only; the paper uses 4 and 4).
    H_layers: int = 4
    #: T: recursion cycles per supervision step (all but the last without gradient).
    H_cycles: int = 3
    #: n: latent updates z <- f(z, y + x) per cycle.
    L_cycles: int = 6
    #: N_sup: maximum supervision (ACT) steps per puzzle; evaluation runs every row to this.
    halt_max_steps: int = 16
    #: Probability that a training row gets a random minimum number of steps (2..N_sup).
    halt_exploration_prob: float = 0.1
    #: Q-learning halting (HRM paper; TRM `no_ACT_continue=False`): halt when q_halt > q_continue
    #: and train q_continue on a target from an extra no-grad step. False: halt when q_halt > 0.
    q_continue: bool = False
    #: Training rows also halt before N_sup when the q head says so (step 3 of recursa/models/act.py;
    #: the official rule, and what frees batch rows for new puzzles). False: every training row runs
    #: all halt_max_steps supervision steps; the q head is still trained (evaluate with --adaptive to
    #: use it). Not in the papers: with early halting a solved puzzle leaves the batch, so the model
    #: is never trained to *hold* a solved answer, and evaluation at a fixed depth runs it past the
    #: point where it stopped being trained. On 15x15 mazes a TRM + 2-D ConvSwiGLU run (30 min on
    #: 2 threads, README's study section) scored 33% valid at 8 fixed steps and 51% halting on its q
    #: head: the answer it had found drifted away in the later steps.
    early_halt: bool = True
    #: The halting head reads a detached copy of the state: its loss trains the head alone and sends
    #: no gradient into the recursion (official: it does). Not in the papers. The head starts at zero
    #: weights, so its pull on the blocks grows as it learns; on 15x15 mazes (TRM + 2-D ConvSwiGLU
    #: without early halting, 32,000 mazes, 30 min on 2 threads) the token loss rose from 0.19 to 0.23
    #: after the held-out valid rate peaked at 57% and the rate fell to 42%; with the head detached
    #: the token loss kept falling and the rate held, 55% at the end (61% at 16 steps). On 9x9 Sudoku
    #: with CGAR + Muon (the study's cgar-muon bundle, 7.6 min, 1 thread, 500 held-out puzzles)
    #: it lifted seed 1 from 52.6% to 83.4% exact at 8 steps (seed 0: 70.8% -> 81.0%).
    halt_detach: bool = False
    #: What the halting decision reads. "head": the q head's q_halt (official). "answer": no learned
    #: head but the model's probability of its own answer, prod over cells of the top softmax
    #: probability, as log-odds (recursa/models/base.py:answer_log_odds), from detached logits; the q
    #: head stays (its q_halt loss trains nothing). Not in the papers. Why: a head that reads one
    #: position's state (z_H[:, 0]) sees the whole answer only where its gradient teaches the
    #: recursion to put it there, which cost 2-3 points of accuracy on the demo; detached
    #: (halt_detach) it separated right from wrong answers by 0.49 vs 0.48 there, while the answer's
    #: probability gave 1.00 vs 0.59. ``recursa eval/solve --halt-signal`` choose it at test time for
    #: any checkpoint; halting calibration (recursa/evaluation/halting.py) measures both.
    halt_signal: Literal["head", "answer"] = "head"
    #: TRM single-latent ablation (official ``trm_singlez``): one state z, updated n times as
    #: z <- f(z + x) and then once as z <- f(z) per cycle; heads read z. TRM only.
    single_latent: bool = False
    #: TRM multi-latent ablation (official ``trm_hier6``: 6): K latents z_1..z_K instead of one; in
    #: each cycle, latent update i (i = 1..n) replaces z_i with f(z_1 + ... + z_K, y + x), then
    #: y <- f(y, z_1 + ... + z_K). Needs n = L_cycles <= K (the paper's ablation: K = n = 6).
    #: 1 = the plain TRM. TRM only.
    latents: int = 1
    #: Replace attention by a SwiGLU over the token axis (TRM-MLP).
    mlp_t: bool = False
    #: URM's ConvSwiGLU (arXiv 2512.14693): a depthwise convolution of this kernel size over the
    #: token axis inside every channel SwiGLU, after the expansion (URM: 2); 0 = off (TRM/HRM).
    conv_swiglu: int = 0
    #: With conv_swiglu: convolve over the puzzle's 2-D grid (each cell sees its k x k neighbourhood,
    #: k odd) instead of the flattened token sequence. Why: flattened row by row, a cell's vertical
    #: neighbours are a whole row away, so URM's 1-D kernel (k = 2) mixes only left-right neighbours
    #: (and wraps across row ends); on a maze, where a path continues up or down as often as
    #: sideways, the 2-D kernel propagates reachability one cell in every direction per
    #: application. Square grids only (Sudoku, mazes, ARC's 30x30 canvas). Not in URM. On the
    #: generated mazes, where one maze step is two grid cells (wall cells between), k = 5 reaches a
    #: whole step and beat k = 3 and k = 7 in 30-minute runs (README, configs/maze15_conv_muon_cpu.toml).
    conv_2d: bool = False
    #: Arithmetic of the convolution, its SiLU and down_proj: "bfloat16" as official URM (whatever
    #: the forward dtype), or "forward" (forward_dtype; on CPUs without AVX512-BF16 bfloat16 is ~100x
    #: slower than float32).
    conv_dtype: Literal["bfloat16", "forward"] = "bfloat16"
    #: A local token mixer: a depthwise k x k convolution (k odd) over the puzzle's square grid
    #: replaces attention (or mlp_t) in every block; 0 = off. The block's channel SwiGLU then mixes
    #: the channels (the ConvNeXt layout). Why: on mazes a shortest path is a chain of local
    #: steps, so a mixer that passes information one cell in every direction per application fits
    #: the problem, and the recursion supplies the depth (H_cycles x (L_cycles + 1) x L_layers
    #: applications per supervision step); attention and the MLP over tokens must learn that
    #: locality from data. The issue's probe (issue 13) and the Deep-Thinking recurrent conv nets
    #: (Schwarzschild et al., 2021) solve mazes this way. Square grids only; not for Sudoku, whose
    #: constraints are not local. Not in TRM/URM.
    conv_mixer: int = 0
    #: A token mixer over the rules' groups of cells: every cell mixes in the mean of each group
    #: its task declares it in (Sudoku: its row, its column, its box; ``Task.groups``), with a
    #: learned per-channel weight per kind of group and one for itself, in place of attention (or
    #: mlp_t) in every block; the block's channel SwiGLU then mixes the channels. Why: a Sudoku
    #: cell's constraints are exactly its row, column and box, so one application tells each cell
    #: which digits its peers hold or lean to (constraint propagation's step), and the recursion
    #: supplies the depth; attention must learn those 20 peers from data. Recurrent relational
    #: networks (Palm et al., 2018) pass messages over the same peer graph. Not in TRM/URM.
    group_mixer: bool = False
    #: How many of the last recursion cycles (T) carry gradient: TRM's 1 (full back-propagation
    #: through the last cycle, the earlier ones without gradient); more = deeper back-propagation,
    #: the knob URM's and RSM's truncation studies turn. TRM family only; at most H_cycles.
    grad_cycles: int = 1
    #: Stochastic depth over the cycles (as RSM's abstract, arXiv 2603.15641, names it): with this
    #: probability a training step runs T' cycles drawn uniformly from 1..H_cycles instead of
    #: H_cycles (a function of the seed and the step: reproducible and resumable); evaluation always
    #: runs H_cycles. 0 = off. RSM's released code grows the depth on a schedule instead
    #: (train.depth_curriculum, as configs/rsm_*.toml do) and draws only whether the previous
    #: cycle's z_H update also carries gradient.
    stochastic_depth: float = 0.0
    #: Position encoding: rotary, learned table, or none.
    pos_encodings: Literal["rope", "learned", "none"] = "rope"
    #: Width of the per-puzzle embedding; -1 means hidden_size, 0 disables it.
    puzzle_emb_ndim: int = -1
    #: Prefix positions reserved for the puzzle embedding (official TRM: 16); 0 = ceil(ndim/D).
    puzzle_emb_len: int = 16
    #: RoPE base.
    rope_theta: float = 10000.0
    #: RMSNorm epsilon.
    rms_norm_eps: float = 1e-5
    #: Blocks of the transformer baseline (official run: 8); 0 means L_layers (TRM's parameter count).
    baseline_layers: int = 0
    #: Activation dtype: weights stay float32 and are cast at use (official: bfloat16 on GPU).
    #: "auto": bfloat16 where a training step of this model is measured faster in it on this
    #: machine, else float32, chosen when training starts (recursa/training/autodtype.py); the run's
    #: config and checkpoints record the choice.
    forward_dtype: Literal["float32", "bfloat16", "auto"] = "float32"

    def __post_init__(self):
        _positive(self, "hidden_size", "num_heads", "L_layers", "H_layers", "H_cycles", "L_cycles", "halt_max_steps",
                  "ffn_multiple")
        for name, limit in MODEL_LIMITS.items():
            _at_most(self, name, limit)
        attention = not self.attention_free  # the heads' constraints only bind where there are heads
        if attention and self.num_heads > self.hidden_size:
            raise RecursaError(f"model.num_heads={self.num_heads} must be <= model.hidden_size={self.hidden_size}")
        head_dim = self.hidden_size // self.num_heads  # as official: need not divide (baseline: 512 / 12 -> 42)
        if attention and self.pos_encodings == "rope" and head_dim % 2:
            raise RecursaError(f"model.hidden_size // model.num_heads = {self.hidden_size} // {self.num_heads} = "
                               f"{head_dim} (the head size) must be even for pos_encodings = \"rope\"")
        if not 0.0 <= self.halt_exploration_prob <= 1.0:
            raise RecursaError(f"model.halt_exploration_prob={self.halt_exploration_prob} must be in [0, 1]")
        if self.halt_signal == "answer" and self.q_continue:
            raise RecursaError('model.halt_signal = "answer" halts on the answer\'s probability; Q-learning halting '
                               "(model.q_continue = true) needs the q head: set one of them back")
        if self.halt_signal == "answer" and self.halt_detach:
            raise RecursaError('model.halt_detach does nothing with model.halt_signal = "answer" (the q head is not '
                               "used to halt and sends no gradient): remove one")
        if self.expansion <= 0:
            raise RecursaError(f"model.expansion={self.expansion} must be > 0")
        _at_most(self, "expansion", MAX_EXPANSION)
        _positive(self, "rope_theta", "rms_norm_eps")
        if self.puzzle_emb_ndim < -1 or self.puzzle_emb_len < 0 or self.baseline_layers < 0:
            raise RecursaError("model.puzzle_emb_ndim must be >= -1; model.puzzle_emb_len and model.baseline_layers >= 0")
        if self.single_latent and self.arch != "trm":
            raise RecursaError(f"model.single_latent is a TRM ablation; it does not apply to arch={self.arch!r}")
        _positive(self, "latents", "grad_cycles")
        if not 0.0 <= self.stochastic_depth <= 1.0:
            raise RecursaError(f"model.stochastic_depth={self.stochastic_depth} must be in [0, 1]")
        if self.stochastic_depth and self.arch == "baseline":
            raise RecursaError("model.stochastic_depth: the baseline has no cycles")
        if self.conv_swiglu < 0:
            raise RecursaError(f"model.conv_swiglu={self.conv_swiglu} must be >= 0 (a kernel size; 0 = off)")
        if self.conv_2d and self.conv_swiglu % 2 == 0:
            raise RecursaError(f"model.conv_2d needs an odd model.conv_swiglu kernel (3, 5, ...), got {self.conv_swiglu}")
        if self.conv_mixer < 0 or (self.conv_mixer and self.conv_mixer % 2 == 0):
            raise RecursaError(f"model.conv_mixer={self.conv_mixer} must be an odd kernel size (3, 5, ...) or 0 (off)")
        if self.conv_mixer and self.arch == "urm":
            raise RecursaError("model.conv_mixer: URM's blocks are attention + RoPE; use arch = \"trm\"")
        if self.group_mixer and (self.conv_mixer or self.arch == "urm"):
            raise RecursaError("model.group_mixer: one token mixer per block; " + (
                "model.conv_mixer is another (set one to 0 / false)" if self.conv_mixer else
                "URM's blocks are attention + RoPE; use arch = \"trm\""))
        if self.grad_cycles > 1 and (self.arch not in ("trm", "urm") or self.grad_cycles > self.H_cycles):
            raise RecursaError(f"model.grad_cycles = {self.grad_cycles}: TRM and URM only, and at most H_cycles = "
                               f"{self.H_cycles}")
        if self.arch == "urm" and (self.pos_encodings != "rope" or self.mlp_t):
            raise RecursaError("model.arch = \"urm\": URM's blocks are attention + RoPE (pos_encodings = \"rope\", "
                               "mlp_t = false)")
        if self.latents > 1:
            if self.arch != "trm" or self.single_latent:
                raise RecursaError(f"model.latents = {self.latents} is a TRM ablation (official trm_hier6); it does not "
                                   f"apply to arch={self.arch!r}" + (" with single_latent" if self.single_latent else ""))
            if self.L_cycles > self.latents:
                raise RecursaError(f"model.L_cycles = {self.L_cycles} > model.latents = {self.latents}: each latent "
                                   "update replaces its own latent, so n = L_cycles must be <= latents")

    @property
    def attention_free(self) -> bool:
        """Whether another token mixer takes attention's place in every block."""
        return bool(self.mlp_t or self.conv_mixer or self.group_mixer)

    @property
    def emb_ndim(self) -> int:
        return self.hidden_size if self.puzzle_emb_ndim == -1 else self.puzzle_emb_ndim



@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    #: Dataset directory in the official layout (train/ and test/), e.g. from `recursa build`.
    data: str = ""
    #: Run directory: metrics.jsonl, config and checkpoints go here.
    out: str = "runs/run"
    #: Global batch size (rows per supervision step).
    batch_size: int = 768
    #: Optimizer steps; 0 means derive from `epochs`.
    steps: int = 0
    #: Epochs over the training groups (used when steps = 0).
    epochs: int = 0
    #: Stop after this many seconds of training (0 = no limit); a final checkpoint is written.
    #: Evaluation and checkpoint writing are not counted (runs compared at equal training time
    #: stay equal whatever their evaluation schedule). With no step or epoch budget, the cosine
    #: learning-rate decay and a depth curriculum run over this time.
    max_time_s: float = 0.0
    #: Optimiser of the network weights: "adam_atan2" (TRM/HRM), "adamw", or "muon" (URM's ARC-AGI-2
    #: recipe: orthogonalised Nesterov momentum for every 2-D weight, AdamW with beta1/beta2 for the
    #: rest, both with weight_decay; see recursa/training/optim.py Muon).
    optimizer: Literal["adam_atan2", "adamw", "muon"] = "adam_atan2"
    #: Peak learning rate.
    lr: float = 1e-4
    #: Final LR as a fraction of the peak (1.0 = constant after warm-up, the papers' setting).
    lr_min_ratio: float = 1.0
    #: Linear warm-up steps.
    lr_warmup_steps: int = 2000
    #: Decoupled weight decay of the network weights.
    weight_decay: float = 0.1
    #: Adam betas.
    beta1: float = 0.9
    beta2: float = 0.95
    #: Sign-SGD learning rate of the puzzle embedding.
    puzzle_emb_lr: float = 1e-2
    #: Decoupled weight decay of the puzzle embedding (touched rows only).
    puzzle_emb_weight_decay: float = 0.1
    #: Token loss: stablemax (official) or softmax cross-entropy.
    loss: Literal["stablemax", "softmax"] = "stablemax"
    #: Keep an exponential moving average of the weights (used for evaluation and saved).
    ema: bool = True
    #: EMA decay.
    ema_rate: float = 0.999
    #: Seed of every random choice (init, sampling, exploration).
    seed: int = 0
    #: "auto" picks cuda, then mps, then cpu.
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    #: CPU threads for torch (0 = torch's default).
    num_threads: int = 0
    #: Log metrics every this many steps.
    log_interval: int = 50
    #: Evaluate every this many steps (0 = only at the end; -1 = never), on ``eval_split``.
    eval_interval: int = 0
    #: The split that evaluations during training, ``keep_best`` and ``recursa sweep`` read:
    #: "auto" = val/ when the dataset has one (``recursa build ... --num-val N``), else test (a note
    #: says that choices made with it have seen the test puzzles); "val" requires val/. The final
    #: report of a run (``test/`` in metrics.jsonl, the "final:" line) is always the test split.
    eval_split: Literal["auto", "val", "test"] = "auto"
    #: Write a checkpoint every this many steps (0 = only at the end).
    checkpoint_interval: int = 0
    #: Checkpoints to keep (older ones are deleted).
    keep_checkpoints: int = 2
    #: Extra metric sinks besides metrics.jsonl: "tensorboard", "wandb".
    loggers: list[str] = field(default_factory=list)
    #: What a non-finite (NaN/inf) training loss does. "stop": end the run with an error naming
    #: the step; nothing after the last good checkpoint is saved and no checkpoint is pruned
    #: (checked without a host sync, at every log interval and before every save).
    #: "skip_step": drop that step's update (no optimizer/EMA step, the in-flight puzzles
    #: restart) and go on; costs one host sync per step; stops after `max_nonfinite_skips`
    #: skipped steps in a row.
    on_nonfinite: Literal["stop", "skip_step"] = "stop"
    #: Clip the gradient of the network weights to this global L2 norm before the optimiser step
    #: (torch.nn.utils.clip_grad_norm_, on the device: no host sync); 0 = off, as the official
    #: TRM/HRM/URM code. RSM (navidivan/rsm) clips at 1.0. The sparse puzzle-embedding rows
    #: (sign-SGD) are not clipped: their update ignores the gradient's size.
    grad_clip: float = 0.0
    #: With on_nonfinite = "skip_step": consecutive skipped steps after which the run stops.
    max_nonfinite_skips: int = 20
    #: Loss weight of supervision step s (1-based) of a puzzle: step_weights ** (s - 1). 1.0 = every
    #: step alike (TRM/HRM); 0.7 = CGAR's hierarchical supervision weighting (arXiv 2511.08653).
    step_weights: float = 1.0
    #: Which supervision steps of a puzzle get the token loss: "all" (TRM/HRM) or "last": only the
    #: step at which the row halts, the earlier ones a warm-up without loss (RSM, arXiv
    #: 2603.15641); the halting losses stay on every step so the head still learns when to stop.
    loss_steps: Literal["all", "last"] = "all"
    #: Puzzles with several right answers (mazes with several shortest paths): train each step
    #: against the right answer nearest the model's own prediction, the one with the least token
    #: loss, instead of the one answer the dataset stores (whose choice among equals the model
    #: cannot know). The "minimum loss over the solution set" of Nandwani et al., "Neural Learning
    #: of One-of-Many Solutions for Combinatorial Problems in Structured Output Spaces" (ICLR
    #: 2021). Mazes: the shortest path of least loss, by dynamic programming over the cells of
    #: shortest paths. The halting target becomes "the answer is right" (any shortest path).
    #: Costs a copy of the logits to the host each step. Families with one answer: an error.
    nearest_answer: bool = False
    #: Depth curriculum (CGAR, arXiv 2511.08653): [[progress, H_cycles, L_cycles], ...] from training
    #: progress 0.0 on, e.g. [[0.0, 1, 2], [0.3, 2, 4], [0.6, 3, 6]] (CGAR's schedule); the
    #: training step runs the depth of the last entry whose progress (step / steps; with a time
    #: budget only, time used / max_time_s) has been reached. Evaluation and checkpoints use the
    #: [model] depth. [] = off.
    depth_curriculum: list[list[float]] = field(default_factory=list)
    #: Keep the best checkpoint by this evaluation metric (higher is better) in
    #: RUN/checkpoints/best, next to the latest: "exact_accuracy", "token_accuracy", "valid_rate"
    #: or a family's metric such as ARC "pass@2" / "all_tests_pass@2" (= "ARC/pass@2"). "" = off.
    #: Needs evaluation (eval_interval >= 0); `eval`/`solve` take RUN/best as a checkpoint.
    keep_best: str = ""
    #: At the end of training, choose the halting threshold that ``--adaptive`` uses on the
    #: dataset's val/ split, when it has one (``recursa build ... --num-val N``), and store it in
    #: the final checkpoint (recursa/evaluation/halting.py). False: ``--adaptive`` keeps 0.5.
    calibrate_halt: bool = True
    #: torch.compile the training step (forward + backward); evaluation and saving use the plain
    #: module. Pays a compile time at the start; worth it on GPUs.
    compile: bool = False
    #: Distributed runs (torchrun): how long a rank waits for the others in a collective, e.g.
    #: while rank 0 alone evaluates or writes a checkpoint.
    dist_timeout_s: float = 7200.0

    def __post_init__(self):
        _positive(self, "batch_size", "lr_warmup_steps", "log_interval", "keep_checkpoints", "max_nonfinite_skips")
        _at_most(self, "batch_size", MAX_BATCH_SIZE)
        if self.steps < 0 or self.epochs < 0:
            raise RecursaError("train.steps and train.epochs must be >= 0")
        for name in ("num_threads", "checkpoint_interval", "seed"):
            if getattr(self, name) < 0:
                raise RecursaError(f"train.{name}={getattr(self, name)} must be >= 0")
        _at_most(self, "num_threads", MAX_THREADS)
        _at_most(self, "seed", MAX_SEED)
        if self.eval_interval < -1:
            raise RecursaError(f"train.eval_interval={self.eval_interval} must be >= -1 (-1 = never, 0 = only at the end)")
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise RecursaError(f"train.lr_min_ratio={self.lr_min_ratio} must be in [0, 1]")
        if not (self.grad_clip >= 0 and math.isfinite(self.grad_clip)):
            raise RecursaError(f"train.grad_clip={self.grad_clip} must be a finite norm >= 0 (0 = off)")
        if not 0.0 < self.step_weights <= 1.0:
            raise RecursaError(f"train.step_weights={self.step_weights} must be in (0, 1] (CGAR: 0.7)")
        cur = self.depth_curriculum
        ok = isinstance(cur, list) and all(isinstance(e, list) and len(e) == 3 for e in cur)
        if ok and cur:
            prog = [e[0] for e in cur]
            ok = (prog[0] == 0 and all(isinstance(p, (int, float)) and 0 <= p < 1 for p in prog)
                  and all(b > a for a, b in zip(prog, prog[1:]))
                  and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MODEL_LIMITS["H_cycles"]
                          for e in cur for v in e[1:]))
        if not ok:
            raise RecursaError(f"train.depth_curriculum = {cur!r}: expected [[progress, H_cycles, L_cycles], ...] "
                               "with progress starting at 0.0 and increasing below 1, cycles integers >= 1 "
                               "(CGAR: [[0.0, 1, 2], [0.3, 2, 4], [0.6, 3, 6]])")
        if self.dist_timeout_s <= 0:
            raise RecursaError(f"train.dist_timeout_s={self.dist_timeout_s} must be > 0")
        for name in ("lr", "puzzle_emb_lr", "weight_decay", "puzzle_emb_weight_decay", "max_time_s"):
            if getattr(self, name) < 0:
                raise RecursaError(f"train.{name}={getattr(self, name)} must be >= 0")
        for name in ("beta1", "beta2", "ema_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise RecursaError(f"train.{name}={getattr(self, name)} must be in [0, 1)")
        for sink in self.loggers:
            if sink not in ("tensorboard", "wandb"):
                raise RecursaError(f"train.loggers: unknown logger {sink!r} (choose from tensorboard, wandb)")


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    #: Evaluate at most this many test puzzles during training (0 = all).
    limit: int = 0
    #: Batch size of evaluation.
    batch_size: int = 256

    def __post_init__(self):
        _positive(self, "batch_size")
        _at_most(self, "batch_size", MAX_BATCH_SIZE)
        if self.limit < 0:
            raise RecursaError(f"eval.limit={self.limit} must be >= 0 (0 = all)")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


SECTIONS = {"model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}


def _positive(obj, *names):
    section = {ModelConfig: "model", TrainConfig: "train", EvalConfig: "eval"}[type(obj)]
    for name in names:
        if getattr(obj, name) <= 0:
            raise RecursaError(f"{section}.{name}={getattr(obj, name)} must be > 0")


def _at_most(obj, name, limit):
    section = {ModelConfig: "model", TrainConfig: "train", EvalConfig: "eval"}[type(obj)]
    if getattr(obj, name) > limit:
        raise RecursaError(f"{section}.{name}={getattr(obj, name)} is too large (the limit is {limit})")


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field annotation (int/float/bool/str/Literal/list[str])."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise RecursaError(f"{key}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin is list:
        (inner,) = typing.get_args(annotation)
        if typing.get_origin(inner) is list:  # a list of number lists (the depth curriculum): checked by its class
            if not isinstance(value, list) or not all(
                    isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                and math.isfinite(x) for x in v) for v in value):
                raise RecursaError(f"{key}: expected a list of lists of numbers, got {value!r}")
            return [list(v) for v in value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RecursaError(f"{key}: expected a list of strings, got {value!r}")
        return list(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise RecursaError(f"{key}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecursaError(f"{key}: expected an integer, got {value!r}")
        if not -(1 << 63) <= value < (1 << 63):
            raise RecursaError(f"{key}: an integer of {len(str(abs(value)))} digits is out of range (64-bit integers only)")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecursaError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
        if not math.isfinite(number):
            shown = repr(value) if isinstance(value, float) else f"an integer of {len(str(abs(value)))} digits"
            raise RecursaError(f"{key}: expected a finite number, got {shown}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise RecursaError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation} for {key}")  # programming error


def _section(name: str, cls, values: dict) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise RecursaError(f"unknown config key '{name}.{key}' (known: {', '.join(sorted(fields))})")
        kwargs[key] = _coerce(f"{name}.{key}", value, hints[key])
    return cls(**kwargs)


def from_dict(raw: dict) -> RunConfig:
    """Build a RunConfig from nested dicts, rejecting unknown sections/keys and bad types."""
    raw = dict(raw)
    raw.pop("version", None)
    for name, value in raw.items():
        if name not in SECTIONS:
            raise RecursaError(f"unknown config section '{name}' (known: {', '.join(SECTIONS)})")
        if not isinstance(value, dict):
            raise RecursaError(f"config section '{name}' must be a table")
    return RunConfig(**{name: _section(name, cls, raw.get(name, {})) for name, cls in SECTIONS.items()})


def _parse_value(text: str) -> Any:
    """Parse the right-hand side of ``--set key=value`` as a TOML value, falling back to a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` overrides to a raw nested dict (values parsed as TOML);
    ``section.key=`` (nothing after ``=``) removes the recipe's value: the key takes its default."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for item in overrides:
        if "=" not in item:
            raise RecursaError(f"--set {item!r}: expected section.key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise RecursaError(f"--set {item!r}: key must be section.key (e.g. train.lr=1e-4)")
        section, name = parts
        if section not in SECTIONS:
            raise RecursaError(f"--set {item!r}: unknown config section '{section}' (known: {', '.join(SECTIONS)})")
        if not text.strip():  # section.key= : back to the default, as if the recipe did not set it
            if name not in {f.name for f in dataclasses.fields(SECTIONS[section])}:
                raise RecursaError(f"--set {item!r}: unknown key '{name}' in [{section}]")
            if isinstance(raw.get(section), dict):
                raw[section].pop(name, None)
            continue
        raw.setdefault(section, {})[name] = _parse_value(text.strip())
    return raw


def load(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Load a TOML recipe, apply overrides, validate."""
    path = Path(path)
    text = storage.read_text(path, "config file")  # missing, a directory, unreadable, not UTF-8: one error line
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecursaError(f"{path}: invalid TOML: {e}") from None
    except RecursionError:
        raise RecursaError(f"{path}: invalid TOML: nested too deeply") from None
    version = raw.get("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise RecursaError(f"{path}: config version {version!r} is not supported (expected {CONFIG_VERSION})")
    try:
        raw = apply_overrides(raw, list(overrides))
        cfg = from_dict(raw)
        check_effective(raw, cfg)
        return cfg
    except RecursaError as e:
        raise RecursaError(f"{path}: {e}") from None


def to_dict(cfg: RunConfig) -> dict:
    return {"version": CONFIG_VERSION, **dataclasses.asdict(cfg)}


def replace(cfg: RunConfig, **sections: dict) -> RunConfig:
    """Return a copy with some fields replaced, e.g. ``replace(cfg, train={"steps": 10})``."""
    raw = to_dict(cfg)
    for name, values in sections.items():
        raw[name].update(values)
    return from_dict(raw)


def ineffective(cfg: RunConfig) -> dict[str, str]:
    """The settings that change nothing given the others: {"section.key": why, naming the other
    setting}. A recipe or ``--set`` that gives one of them is refused (``load``); ``to_toml`` leaves
    them out. (Checkpoints written before a rule was added keep loading: their config is read with
    ``from_dict``.)"""
    m, t = cfg.model, cfg.train
    out: dict[str, str] = {}
    mixer = ("model.group_mixer = true: the groups' means replace the token mixer in every block"
             if m.group_mixer else
             f"model.conv_mixer = {m.conv_mixer}: its convolution replaces the token mixer in every block"
             if m.conv_mixer else "model.mlp_t = true: an MLP over the tokens replaces attention in every block"
             if m.mlp_t else None)
    if m.conv_mixer or m.group_mixer:
        out["model.mlp_t"] = mixer
    if mixer:  # no attention anywhere
        out["model.num_heads"] = mixer
        if m.pos_encodings == "rope":
            out["model.pos_encodings"] = mixer + ", and rotary encodings act inside attention (use \"none\")"
        out["model.rope_theta"] = mixer
    elif m.pos_encodings != "rope":
        out["model.rope_theta"] = f"model.pos_encodings = {toml_value(m.pos_encodings)}"
    if not m.conv_swiglu:
        for key in ("conv_2d", "conv_dtype"):
            out[f"model.{key}"] = "model.conv_swiglu = 0: there is no ConvSwiGLU convolution"
    if not t.ema:
        out["train.ema_rate"] = "train.ema = false"
    if t.on_nonfinite != "skip_step":
        out["train.max_nonfinite_skips"] = f"train.on_nonfinite = {toml_value(t.on_nonfinite)}: no step is skipped"
    return out


def check_effective(raw: dict, cfg: RunConfig) -> None:
    """Refuse a setting given in ``raw`` (a recipe with its overrides) that ``ineffective`` names."""
    for key, why in ineffective(cfg).items():
        section, name = key.split(".")
        if isinstance(raw.get(section), dict) and name in raw[section]:
            raise RecursaError(f"{key} = {toml_value(raw[section][name])} has no effect with {why}; remove it")


def to_toml(cfg: RunConfig) -> str:
    """Serialise a RunConfig as TOML (flat sections of scalars and string lists), without the
    settings that have no effect given the others (``ineffective``), so the file loads again."""
    skip = ineffective(cfg)
    lines = [f"version = {CONFIG_VERSION}"]
    for name in SECTIONS:
        lines.append(f"\n[{name}]")
        for key, value in dataclasses.asdict(getattr(cfg, name)).items():
            if f"{name}.{key}" not in skip:
                lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """``value`` written as in a TOML recipe (true, 1e-3, "adamw", [...])."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)
