"""Run recursa against small tmpfs file systems inside a private mount namespace.

Started by tests/test_hostile.py as ``unshare --mount python in_mount.py SPEC.json RESULT.json``
(or with ``--user --map-root-user`` where a plain ``--mount`` is not allowed). A tmpfs mounted in
the namespace disappears with it, so every check of what a command left on such a disk happens
here: each step of SPEC is executed in order and its outcome (exit code, stdout, stderr, an
escaping exception, a listing of a directory...) is appended to RESULT, which lies outside the
mounts. Steps (dicts, key ``op``):

  mount      {"dir", "opts"}         mount -t tmpfs -o OPTS tmpfs DIR
  remount_ro {"dir"}                 mount -o remount,ro DIR
  main       {"argv"}                recursa.cli.main(argv) in this process, output captured
  cli        {"argv"}                python -m recursa ARGV in a child process
  fill       {"path", "leave"}       write zeros to PATH until at most LEAVE bytes are free
  rm         {"path"}                remove a file
  listing    {"dir"}                 {relative path: sha256 or "dir"} of everything under DIR
  check_run  {"run"}                 RUN/latest names a complete checkpoint whose files match
                                     their recorded SHA-256 and whose tensors are all finite
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path


def listing(d: str) -> dict:
    out = {}
    base = Path(d)
    for root, dirs, files in os.walk(base):
        for n in dirs + files:
            p = Path(root) / n
            rel = str(p.relative_to(base))
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def run_main(argv: list[str]) -> dict:
    from recursa.cli import main
    out, err = io.StringIO(), io.StringIO()
    exc = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
        except BaseException:  # noqa: BLE001 - recorded: an exception escaping main is a failure
            rc = None
            exc = traceback.format_exc()
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue(), "exc": exc}


def check_run(run: str) -> dict:
    import torch
    from safetensors.torch import load_file

    from recursa.inference.checkpoint import load_checkpoint
    from recursa.inference import checkpoint

    try:
        ckpt = checkpoint.resolve(run)
        meta = checkpoint.read_meta(ckpt)
        for name in (meta.get("files") or {}):
            checkpoint.verify(ckpt / name, meta)
        load_checkpoint(ckpt)
        finite = all(bool(torch.isfinite(t.float()).all()) for name in ("model.safetensors", "train_state.safetensors")
                     for t in load_file(str(ckpt / name)).values() if t.is_floating_point())
        return {"ok": True, "ckpt": ckpt.name, "step": meta["step"], "finite": finite}
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


def fill(path: str, leave: int) -> dict:
    st = os.statvfs(Path(path).parent)
    free = st.f_bavail * st.f_frsize
    chunk = b"\0" * 4096
    written = 0
    with open(path, "wb") as f:
        try:
            while free - written > leave:
                f.write(chunk)
                f.flush()
                written += len(chunk)
        except OSError:
            pass
    st = os.statvfs(Path(path).parent)
    return {"written": written, "free": st.f_bavail * st.f_frsize}


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    result_path = Path(sys.argv[2])
    results = []
    for step in spec:
        op = step["op"]
        if op == "mount":
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", step["opts"], "tmpfs", step["dir"]],
                               capture_output=True, text=True)
            res = {"rc": r.returncode, "err": r.stderr}
        elif op == "remount_ro":
            r = subprocess.run(["mount", "-o", "remount,ro", step["dir"]], capture_output=True, text=True)
            res = {"rc": r.returncode, "err": r.stderr}
        elif op == "main":
            res = run_main(step["argv"])
        elif op == "cli":
            r = subprocess.run([sys.executable, "-m", "recursa", *step["argv"]], capture_output=True, text=True)
            res = {"rc": r.returncode, "out": r.stdout, "err": r.stderr, "exc": None}
        elif op == "fill":
            res = fill(step["path"], step["leave"])
        elif op == "rm":
            os.unlink(step["path"])
            res = {}
        elif op == "listing":
            res = listing(step["dir"])
        elif op == "check_run":
            res = check_run(step["run"])
        else:
            raise SystemExit(f"unknown op {op!r}")
        results.append({"op": op, **res})
        result_path.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
