"""Files and directories that never lose a user's data.

Everything recursa writes goes through here:

- **reading** user files (:func:`read_text`, :func:`read_json`): a missing file, a directory, a
  permission problem or bytes that are not UTF-8 become one :class:`RecursaError` naming the
  file (and the byte offset);
- **small files** (:func:`atomic_write_text`): written to a temporary sibling, flushed to disk,
  then renamed over the target, so a reader sees the old or the new content, never a mix;
- **directories** (datasets, checkpoints): built in a staging sibling (:func:`staging_dir`) and
  swapped in by :func:`replace_dir`, which exchanges the two names in one system call on Linux
  (``renameat2(RENAME_EXCHANGE)``) and elsewhere renames the old one aside, renames the new one
  in and puts the old one back on failure. A crash at any point leaves the old or the new
  directory at the path; a crash between the two renames of the fallback is repaired by the next
  writer (:func:`clean_stale`), which also removes the staging leftovers of dead processes;
- **what may be replaced** (:func:`check_out`): an existing ``--out`` is replaced only when it is
  empty, or when it is a recursa artifact of the expected kind *and* the user said ``--overwrite``;
  anything else is refused, untouched;
- **one writer per run directory** (:class:`RunLock`): an exclusive lock file holding the owner's
  PID; a lock left by a dead process is taken over, saying so.

Temporary names carry the writer's host and PID (``.NAME.tmp-HOST-PID-RANDOM``), so a later
process can tell a dead writer's leftovers from a live writer's work.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .errors import RecursaError

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
_TAG_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)-[0-9a-f]+$")


# ---------------------------------------------------------------------- reading
def _os_problem(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "not found"
    if isinstance(e, IsADirectoryError):
        return "is a directory, expected a file"
    if isinstance(e, NotADirectoryError):
        return "a parent of this path is not a directory"
    if isinstance(e, PermissionError):
        return "permission denied"
    return e.strerror or str(e)


def read_bytes(path: str | Path, what: str = "file") -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except OSError as e:
        raise RecursaError(f"{path}: {what} {_os_problem(e)}") from None


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; every problem is a one-line error naming the file."""
    path = Path(path)
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise RecursaError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}, line {line})") from None


def read_json(path: str | Path, expect: type | tuple[type, ...] | None = None, what: str = "file") -> Any:
    """Parse a JSON file; ``expect`` (dict, list) checks the top-level type."""
    path = Path(path)
    text = read_text(path, what)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecursaError(f"{path}: invalid JSON: {e}") from None
    except RecursionError:
        raise RecursaError(f"{path}: invalid JSON: nested too deeply") from None
    if expect is not None and not isinstance(obj, expect):
        names = {dict: "a JSON object", list: "a JSON list"}
        want = " or ".join(names.get(t, t.__name__) for t in (expect if isinstance(expect, tuple) else (expect,)))
        raise RecursaError(f"{path}: expected {want}, got {type(obj).__name__ if obj is not None else 'null'}")
    return obj


# ---------------------------------------------------------------------- small files
def _tag(name: str, kind: str) -> str:
    return f".{name}.{kind}-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"


def fsync_path(path: Path) -> None:
    """Flush a file (or a directory entry) to disk; best effort where the OS does not allow it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes, *, sync: bool = True) -> None:
    path = Path(path)
    tmp = path.with_name(_tag(path.name, "tmp"))
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError) and e.errno is not None:  # name the user's path, not our hidden one
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def atomic_write_text(path: str | Path, text: str, *, sync: bool = True) -> None:
    """Replace ``path`` with ``text`` so that a reader never sees a partial file."""
    atomic_write_bytes(path, text.encode("utf-8"), sync=sync)


# ---------------------------------------------------------------------- processes
def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    return True


def _dead(host: str, pid: int) -> bool:
    """True only when we can be sure: the writer ran on this host and is gone."""
    return host == _HOST and not pid_alive(pid)


# ---------------------------------------------------------------------- directories
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2 = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
        _renameat2 = getattr(_libc, "renameat2", None)
    except OSError:  # pragma: no cover
        _renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False when the platform or filesystem cannot."""
    if _renameat2 is None:
        return False
    r = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if r == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def staging_dir(final: str | Path) -> Path:
    """A fresh empty sibling directory in which to build ``final`` (stale leftovers of dead
    writers for the same name are cleaned first)."""
    final = Path(final)
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        clean_stale(parent, final.name)
        tmp = parent / _tag(final.name, "tmp")
        tmp.mkdir()
    except OSError as e:  # read-only, permissions...: name the user's path, not our hidden one
        raise OSError(e.errno, e.strerror, str(final)) from None
    return tmp


def remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace_dir(tmp: str | Path, final: str | Path) -> None:
    """Put the complete directory ``tmp`` at ``final``, replacing what is there atomically.

    The caller has already decided that ``final`` may be replaced (:func:`check_out`)."""
    tmp, final = Path(tmp), Path(final)
    if not final.exists() and not final.is_symlink():
        try:
            os.rename(tmp, final)
            fsync_path(final.parent)
            return
        except OSError as e:  # a concurrent writer put its directory there first: replace it below
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    if _exchange(tmp, final):  # tmp now holds the old content
        fsync_path(final.parent)
        remove_tree(tmp)
        return
    old = final.with_name(_tag(final.name, "old"))
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    fsync_path(final.parent)
    remove_tree(old)


def move_aside(path: str | Path) -> Path:
    """Rename ``path`` to a hidden sibling (``.NAME.old-HOST-PID-RANDOM``) and return it; put it
    back with ``os.rename(aside, path)``. If this process dies, the next :func:`clean_stale` for
    NAME restores it when NAME is missing, or removes it when a new NAME took its place."""
    path = Path(path)
    aside = path.with_name(_tag(path.name, "old"))
    os.rename(path, aside)
    return aside


def clean_stale(parent: str | Path, name: str | None = None, log: Callable[[str], None] | None = None) -> list[str]:
    """Remove the temporary files/dirs of writers that died (this host, PID gone); when a crash
    left ``NAME`` missing and its old version renamed aside, put the old version back.
    ``name`` limits this to one target name. Returns what was done, one line per item."""
    parent = Path(parent)
    done = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return done
    for p in sorted(entries):
        m = _TAG_RE.match(p.name)
        if not m or (name is not None and m["name"] != name):
            continue
        if not _dead(m["host"], int(m["pid"])):
            continue
        target = parent / m["name"]
        if m["kind"] == "old" and not target.exists() and not target.is_symlink():
            try:
                os.rename(p, target)
                done.append(f"restored {target} (a crash had left it renamed aside as {p.name})")
                continue
            except OSError:
                pass
        remove_tree(p)
        done.append(f"removed {p} (left by process {m['pid']}, which is no longer running)")
    if log is not None:
        for line in done:
            log(f"note: {line}")
    return done


# ---------------------------------------------------------------------- what may be replaced
_DATASET_TOP = {"train", "test", "val", "identifiers.json", "task.json", "rejected.txt", "test_puzzles.json",
                "val_puzzles.json"}
_CHECKPOINT_FILES = {"config.json", "model.safetensors", "train_state.safetensors", "train_state.json",
                     "identifiers.json"}
_DEMO_TOP = {"data", "trm", "baseline", "trm.toml", "baseline.toml", "trm.log", "baseline.log", "summary.json",
             "accuracy_by_step.png", "demo.json"}
KIND_NAMES = {"dataset": "a recursa dataset", "checkpoint": "a recursa checkpoint directory",
              "demo": "a recursa demo output"}


def _visible(path: Path) -> list[str]:
    """Entries of a directory, ignoring recursa's own temporary leftovers."""
    return sorted(p.name for p in path.iterdir() if not _TAG_RE.match(p.name))


def _is_dataset(path: Path) -> str | None:
    """None when ``path`` looks like a dataset written by recursa or the official builders, else why not."""
    entries = _visible(path)
    if not any(e in ("train", "test") and (path / e / "dataset.json").is_file() for e in entries):
        return "it has no train/dataset.json or test/dataset.json"
    splits = [e for e in entries if e in ("train", "test", "val")]
    if any(not (path / e).is_dir() for e in splits):
        return f"its {next(e for e in splits if not (path / e).is_dir())!r} is not a directory"
    extra = [e for e in entries if e not in _DATASET_TOP]
    if extra:
        return f"it also holds {extra[0]!r}, which a dataset build does not write"
    for s in splits:
        odd = [e for e in _visible(path / s) if not (e == "dataset.json" or (e.endswith(".npy") and "__" in e))]
        if odd:
            return f"{s}/ also holds {odd[0]!r}, which a dataset build does not write"
    return None


def _is_checkpoint(path: Path) -> str | None:
    entries = _visible(path)
    if "config.json" not in entries or "model.safetensors" not in entries:
        return "it has no config.json + model.safetensors"
    extra = [e for e in entries if e not in _CHECKPOINT_FILES]
    if extra:
        return f"it also holds {extra[0]!r}, which a checkpoint does not"
    try:
        meta = json.loads((path / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return "its config.json is not a recursa checkpoint config"
    if not isinstance(meta, dict) or "format_version" not in meta:
        return "its config.json is not a recursa checkpoint config"
    return None


def _is_demo(path: Path) -> str | None:
    entries = _visible(path)
    if "demo.json" not in entries and "summary.json" not in entries:  # summary.json: demos before demo.json
        return "it has no demo.json"
    extra = [e for e in entries if e not in _DEMO_TOP]
    if extra:
        return f"it also holds {extra[0]!r}, which the demo does not write"
    return None


_KIND_CHECKS = {"dataset": _is_dataset, "checkpoint": _is_checkpoint, "demo": _is_demo}


def check_out(out: str | Path, kind: str, overwrite: bool, flag: str = "--out") -> bool:
    """Decide whether ``out`` may be written. Returns True when something exists there and will be
    replaced, False when the path is free (missing or an empty directory). Raises a
    :class:`RecursaError` (and touches nothing) when ``out`` is a file, the working directory or
    one of its parents, not an artifact of ``kind``, or an artifact without ``overwrite``."""
    out = Path(out)
    if str(out) in ("", ".") or out.name in ("", ".", ".."):
        raise RecursaError(f"{flag} {str(out)!r}: name a directory to create (e.g. {flag} data/mine), not "
                           "the current directory")
    try:
        resolved, cwd = out.resolve(), Path.cwd().resolve()
    except OSError as e:
        raise RecursaError(f"{out}: {_os_problem(e)}") from None
    if resolved == cwd or resolved in cwd.parents:
        raise RecursaError(f"{flag} {out}: that is the current directory or one of its parents; "
                           "name a directory to create")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RecursaError(f"{flag} {out}: exists and is not a directory; refusing to replace it")
    if not out.exists():
        if out.parent.exists() and not out.parent.is_dir():
            raise RecursaError(f"{flag} {out}: {out.parent} is not a directory")
        return False
    try:
        empty = not any(out.iterdir())
    except OSError as e:
        raise RecursaError(f"{out}: cannot read the directory ({_os_problem(e)})") from None
    if empty:
        return False
    why_not = _KIND_CHECKS[kind](out)
    if why_not is not None:
        raise RecursaError(f"{flag} {out}: exists and is not {KIND_NAMES[kind]} ({why_not}); refusing to replace "
                           "it; choose another path")
    if not overwrite:
        raise RecursaError(f"{flag} {out}: already holds {KIND_NAMES[kind]}; pass --overwrite to replace it")
    return True


def write_failure(target: Path, what: str, e: BaseException) -> RecursaError:
    """A one-line error for an OS failure while writing ``target`` (disk full, read-only...)."""
    msg = " ".join(str(getattr(e, "strerror", None) or e).split())
    try:
        free = shutil.disk_usage(next(p for p in (target, *target.parents) if p.exists())).free
        if free < (64 << 20) and "space" not in msg.lower():
            # e.g. numpy's "N requested and M written", which carries no errno
            msg = f"No space left on device: {msg}; only {free / 2**20:.1f} MiB free on that disk"
    except (OSError, StopIteration):
        pass
    return RecursaError(f"{target}: cannot write the {what} ({msg[:300]}); nothing was left half-written")


def check_file_out(path: str | Path, flag: str) -> None:
    """Refuse, before any work, an output file path that is a directory or under a non-directory."""
    path = Path(path)
    if str(path) in ("", ".") or path.is_dir():
        raise RecursaError(f"{flag} {path}: is a directory; name a file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RecursaError(f"{flag} {path}: {parent} is not a directory")
            break


# ---------------------------------------------------------------------- one writer per run
class RunLock:
    """An exclusive lock on a run directory for the life of a trainer.

    ``RUN/.lock`` holds the owner's PID, host and start time. The lock itself is an OS lock
    (``flock``) on that file, released by the OS when the process dies, so a lock of a killed
    trainer never blocks; where ``flock`` is unavailable the PID decides. A second trainer gets a
    :class:`RecursaError` naming the owner."""

    def __init__(self, run_dir: str | Path, log: Callable[[str], None] = print):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None
        self.log = log

    def _describe(self, info: dict) -> str:
        if info.get("pid") is None:
            return "owner unknown"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"])) if isinstance(
            info.get("started"), (int, float)) else "?"
        return f"process {info.get('pid')} on {info.get('host')} (since {since})"

    def _read(self) -> dict:
        try:
            with open(self.path, "rb") as f:
                raw = f.read(4096)
            info = json.loads(raw.decode("utf-8"))
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RecursaError(f"{self.path}: cannot create the run lock ({_os_problem(e)})") from None
        locked = False
        try:
            import fcntl  # late: POSIX only
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                os.close(fd)
                info = self._read()
                for _ in range(40):  # the owner may have the lock but not yet have written its PID
                    if info.get("pid") is not None:
                        break
                    time.sleep(0.05)
                    info = self._read()
                raise RecursaError(f"{self.path.parent}: another trainer is using this run directory "
                                   f"({self._describe(info)}); wait for it to finish or use another train.out") from None
            except OSError:
                locked = False  # e.g. a filesystem without flock: fall back to the PID
        except ImportError:  # pragma: no cover - not POSIX
            pass
        info = self._read()
        if info.get("pid") is not None and info.get("pid") != os.getpid():
            pid = info.get("pid")
            alive = isinstance(pid, int) and info.get("host") == _HOST and pid_alive(pid)
            if not locked and alive:
                os.close(fd)
                raise RecursaError(f"{self.path.parent}: another trainer is using this run directory "
                                   f"({self._describe(info)}); wait for it to finish or use another train.out")
            self.log(f"note: took over the lock of {self._describe(info)}, which is no longer running")
        data = json.dumps({"pid": os.getpid(), "host": _HOST, "started": time.time()}).encode()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass
        os.close(self.fd)  # closing releases the flock
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
