"""Convert a checkpoint written by the official TRM or HRM training code into a recursa
checkpoint, usable by `recursa eval` and `recursa solve` (on CPU too).

Handles the key prefixes of compiled (`_orig_mod.model.inner.`) and plain (`model.inner.`)
runs, bf16 init vectors, any number of puzzle-embedding rows, and the official config file
(`all_config.yaml`: the arch fields are mapped; fields recursa does not use are reported).
Loading never runs code: a pickle that wants to is refused. Every missing, unexpected or
wrongly-shaped key is named with both shapes.

CKPT is a checkpoint file or the official run directory (checkpoints/<project>/<run>): its latest
step_N, or the one named by --step (the final checkpoint is not always the best one); --config
defaults to the all_config.yaml the official trainer writes beside its checkpoints.

Example:
  recursa import-official step_65100 --config all_config.yaml --data data/sudoku-extreme --out ckpt/trm-sudoku
  recursa import-official checkpoints/Arc2/my_run --step 651522 --data data/arc2 --out ckpt/arc2-651522
  recursa eval ckpt/trm-sudoku --data data/sudoku-extreme
"""

from __future__ import annotations

import argparse

from ..inference.official import import_official, resolve_official
from ..models import MODELS


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("ckpt", help="official checkpoint file (checkpoints/<project>/<run>/step_N) or the run directory")
    p.add_argument("--step", type=int, help="with a run directory: import step_N (default: the latest)")
    p.add_argument("--arch", choices=sorted(MODELS),
                   help="model family (default: from arch.name in the config: trm, trm_singlez (TRM with "
                        "single_latent), trm_hier6 (TRM with latents), hrm, transformers_baseline, urm)")
    p.add_argument("--config", help="the run's official all_config.yaml (default: the one beside the checkpoint)")
    p.add_argument("--identifiers", help="the dataset's identifiers.json (puzzle id -> name), kept with the checkpoint")
    p.add_argument("--data", help="a dataset directory (official layout): gives seq_len, identifiers and the task")
    p.add_argument("--seq-len", type=int, help="sequence length, when neither the weights nor --data give it")
    p.add_argument("--out", required=True, help="output checkpoint directory (must not exist, or be empty)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing recursa checkpoint at --out (atomically); anything else is refused")


def run(args) -> int:
    ckpt, config_yaml = resolve_official(args.ckpt, args.step, args.config)
    import_official(ckpt, args.out, arch=args.arch, config_yaml=config_yaml, identifiers=args.identifiers,
                    data=args.data, seq_len=args.seq_len, overwrite=args.overwrite)
    return 0
