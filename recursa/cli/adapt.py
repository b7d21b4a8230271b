"""Adapt a trained ARC model to tasks it did not see in training: their augmented versions get new
puzzle-embedding rows, fitted on the tasks' demonstration pairs only (network frozen, or with
--full-model the whole model at a small learning rate). Then evaluate their test inputs.

  recursa adapt runs/arc --tasks new_challenges.json [--solutions new_solutions.json] \\
      --out ckpt/adapted --data-out data/adapted --steps 300
  recursa eval ckpt/adapted --data data/adapted --submission submission.json
  recursa adapt ... --steps 0        # no adaptation: the new rows stay blank (the baseline)

The tasks file is in the Kaggle layout ({id: {"train": [...], "test": [{"input": ...}]}}); outputs
come from --solutions or the tasks file itself, else the tasks are answered but not scored.
"""

from __future__ import annotations

import argparse

from ..device import pick_device
from ..training.adapt import adapt


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("ckpt", help="a trained ARC checkpoint or run directory")
    p.add_argument("--tasks", required=True, help="the new tasks, Kaggle-layout challenges JSON")
    p.add_argument("--solutions", help="their test outputs (Kaggle-layout solutions JSON), to score them")
    p.add_argument("--out", required=True, help="the adapted checkpoint directory")
    p.add_argument("--data-out", required=True, help="the adaptation dataset directory (evaluate on it)")
    p.add_argument("--num-aug", type=int, default=8, help="augmented versions per new task (default 8)")
    p.add_argument("--steps", type=int, default=200, help="fitting steps (default 200; 0 = blank rows, the baseline)")
    p.add_argument("--batch-size", type=int, default=32, help="fitting batch (default 32)")
    p.add_argument("--lr", type=float, default=1e-2, help="sign-SGD learning rate of the new rows (default 1e-2)")
    p.add_argument("--weight-decay", type=float, default=0.1, help="their weight decay (default 0.1)")
    p.add_argument("--full-model", action="store_true", help="also fine-tune the network (AdamW at --model-lr)")
    p.add_argument("--model-lr", type=float, default=1e-5, help="with --full-model (default 1e-5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the versions, sampling and exploration (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint / dataset at the outputs")


def run(args) -> int:
    adapt(args.ckpt, args.tasks, args.out, args.data_out, solutions_path=args.solutions, num_aug=args.num_aug,
          steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
          full_model=args.full_model, model_lr=args.model_lr, seed=args.seed, device=pick_device(args.device),
          overwrite=args.overwrite)
    return 0
