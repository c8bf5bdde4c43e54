"""Atomic checkpoints (Contract 4).

`checkpoints/step-000120/` is written as `step-000120.tmp/`, every file fsynced, the folder renamed, and a
`COMPLETE` file holding the sha256 of every file is written last. A checkpoint without a valid `COMPLETE` does
not exist: `latest_valid` skips it with a warning and falls back to the one before. COMPLETE lists every file of
the folder (an unlisted file is an error too) and the epoch of the attempt that wrote it (see fence.py).

`base/`, `final/` and merged models are written with the same procedure (`save_atomic`).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from ..process.events import EXIT_DISK_FULL, TrainerError, log
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from ..process.fence import Fence, NoFence

COMPLETE = "COMPLETE"
# A sharded checkpoint (several ranks, sharded_checkpoint.py) keeps its weights and optimizer states here.
DCP_DIR = "dcp"
_STEP_DIR = re.compile(r"^step-(\d{6,})$")


def is_sharded(path: str | Path) -> bool:
    return (Path(path) / DCP_DIR).is_dir()


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def hash_files(folder: str | Path) -> dict[str, str]:
    """sha256 of every file under `folder` except COMPLETE and files still being written (`*.tmp`), by relative path."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if _listed(p)}


def _listed(p):
    """Files a COMPLETE must list: all but itself and `*.tmp` (written in place, then renamed)."""
    return p.is_file() and p.name != COMPLETE and not p.name.endswith(".tmp")


def write_complete(folder: str | Path, extra: dict | None = None, files: dict[str, str] | None = None) -> None:
    """Writes COMPLETE (sha256 of every other file, recursively) last, fsynced."""
    folder = Path(folder)
    files = hash_files(folder) if files is None else files
    tmp = folder / (COMPLETE + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"files": files, **(extra or {})}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / COMPLETE)
    _fsync_dir(folder)


def read_complete(folder: str | Path) -> dict | None:
    try:
        return json.loads((Path(folder) / COMPLETE).read_text())
    except (OSError, ValueError):
        return None


def verify(folder: str | Path) -> str | None:
    """None if the folder holds a valid COMPLETE that lists every file with its sha256, else the reason it does not."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / COMPLETE).read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not an object")
    except FileNotFoundError:
        return "no COMPLETE file"
    except NotADirectoryError:
        return "not a folder"
    except (ValueError, KeyError, TypeError) as e:
        return f"unreadable COMPLETE file ({e})"
    for name, digest in files.items():
        p = folder / name
        if not p.is_file():
            return f"{name} is missing"
        if sha256_file(p) != digest:
            return f"{name} does not match its sha256"
    unlisted = [str(p.relative_to(folder)) for p in folder.rglob("*") if _listed(p) and str(p.relative_to(folder)) not in files]
    if unlisted:
        return f"{sorted(unlisted)[0]} is not listed in COMPLETE"
    return None


def epoch_of(folder: str | Path) -> int:
    """The attempt epoch recorded in a folder's COMPLETE (0 for folders written before epochs existed)."""
    c = read_complete(folder)
    return int(c.get("epoch", 0)) if isinstance(c, dict) else 0


def save(checkpoints_dir: str | Path, step: int, write_files: Callable[[Path], None], fence: Fence | NoFence, extra: dict | None = None) -> Path:
    """Writes checkpoints/step-NNNNNN atomically. `write_files(tmp_dir)` writes the payload. Returns its path."""
    return save_atomic(Path(checkpoints_dir) / step_dir_name(step), write_files, fence, {"step": step, **(extra or {})})


class DiskFullError(TrainerError):
    """The disk of `path` is full (exit 74: this machine's fault, not the run's; the job goes to another worker)."""

    exit_code = EXIT_DISK_FULL

    def __init__(self, path):
        where = Path(path)
        while not where.exists() and where != where.parent:
            where = where.parent
        free = shutil.disk_usage(where).free
        super().__init__("disk", f"no space left on the disk of {path} ({free / 2**20:.1f} MiB free there): free disk space on this machine")


def _disk_full(e):
    text = str(e)
    return getattr(e, "errno", None) == errno.ENOSPC or "No space left" in text or "unexpected pos" in text or "file write failed" in text


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class HashingFile:
    """A file opened for writing that hashes (sha256) what goes through it, so that a checkpoint is never read back
    to be hashed. Enough of a file for torch.save and DCP's writer: write, tell, flush, fileno, close."""

    def __init__(self, path: str | Path, digests: dict, key: str):
        self._f = open(path, "wb")
        self._h = hashlib.sha256()
        self._digests, self._key = digests, key

    def write(self, b) -> int:
        self._h.update(b)
        return self._f.write(b)

    def tell(self) -> int:
        return self._f.tell()

    def flush(self) -> None:
        self._f.flush()

    def fileno(self) -> int:
        return self._f.fileno()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self._f.closed

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
            self._digests[self._key] = self._h.hexdigest()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def umask() -> int:
    """This process's umask (read from /proc where it can: setting it to read it back is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def write_tmp(final: str | Path, write_files: Callable[[Path], dict | None]) -> tuple[Path, dict[str, str]]:
    """Writes `<final>.tmp/` with `write_files` and fsyncs every file. Returns the folder and the sha256 of every
    file: those `write_files` returns (hashed while it wrote them, HashingFile) are not read again."""
    final = Path(final)
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / (final.name + ".tmp")
    _remove(tmp)
    try:
        tmp.mkdir()
        known = write_files(tmp)
        known = known if isinstance(known, dict) else {}
        files = {}
        mode = 0o666 & ~umask()
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                if p.stat().st_mode & 0o777 != mode:  # a writer's private temp file (safetensors: 0600) follows the umask
                    p.chmod(mode)
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
                if _listed(p):
                    name = str(p.relative_to(tmp))
                    files[name] = known.get(name) or sha256_file(p)
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if _disk_full(e):
            raise DiskFullError(parent) from e
        raise
    return tmp, files


def publish(tmp: Path, final: str | Path, files: dict[str, str], fence: Fence | NoFence, extra: dict | None = None) -> Path:
    """While the fence says this attempt owns the run: renames `tmp` to `final` and writes COMPLETE (with the
    attempt's epoch) last."""
    final = Path(final)
    with fence.publishing():
        try:
            _remove(final)
            os.rename(tmp, final)
            _fsync_dir(final.parent)
            write_complete(final, {**(extra or {}), "epoch": fence.epoch}, files)
        except OSError as e:
            if _disk_full(e):
                raise DiskFullError(final.parent) from e
            raise
    return final


def save_atomic(final: str | Path, write_files: Callable[[Path], dict | None], fence: Fence | NoFence, extra: dict | None = None) -> Path:
    """Writes a folder as `<final>.tmp`, fsyncs and hashes every file (write_tmp); then publishes it (publish)."""
    tmp, files = write_tmp(final, write_files)
    return publish(tmp, final, files, fence, extra)


def size_of(folder: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def make_room(checkpoints_dir: str | Path, need: int | None = None) -> None:
    """Before a save: deletes leftover .tmp folders, then the oldest complete checkpoints (never the newest) while
    the disk has less than `need` bytes free (default: 1.1 x what the newest checkpoint takes), so that a save does
    not run out of disk with old ones still there."""
    d = Path(checkpoints_dir)
    if not d.is_dir():
        return
    _remove_leftovers(d)
    complete = complete_newest_first(d)
    if need is None:
        need = int(1.1 * size_of(complete[0])) if complete else 0
    while len(complete) > 1 and shutil.disk_usage(d).free < need:
        p = complete.pop()
        log(f"only {shutil.disk_usage(d).free / 2**30:.1f} GiB free for a {need / 2**30:.1f} GiB checkpoint: deleting {p.name} first")
        shutil.rmtree(p, ignore_errors=True)


def complete_newest_first(checkpoints_dir: str | Path) -> list[Path]:
    """The checkpoint folders with a COMPLETE file (not verified), newest first: by attempt epoch, then step."""
    complete = [(epoch_of(p), s, p) for s, p in list_steps(checkpoints_dir) if (p / COMPLETE).exists()]
    return [p for _, _, p in sorted(complete, key=lambda t: (t[0], t[1]), reverse=True)]


def _remove_leftovers(d: Path) -> None:
    for p in d.glob("step-*.tmp"):
        shutil.rmtree(p, ignore_errors=True)


def load_file(file: str | Path):
    """torch.load of a checkpoint file (verified against COMPLETE first). weights_only where torch's safe loader
    handles every type we save (torch >= 2; Debian's torch 1.13 used by CI lacks float support in it)."""
    import torch

    return torch.load(file, map_location="cpu", weights_only=int(torch.__version__.split(".")[0]) >= 2)


def save_hashed(obj, folder: Path, name: str, digests: dict) -> None:
    """torch.save of `obj` to folder/name, its sha256 recorded in `digests[name]` as it is written."""
    import torch

    with HashingFile(folder / name, digests, name) as f:
        torch.save(obj, f)


def list_steps(checkpoints_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint folder (complete or not), step order, newest first; .tmp folders and plain
    files excluded."""
    d = Path(checkpoints_dir)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and not p.is_symlink():
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def valid_checkpoints(checkpoints_dir: str | Path) -> Iterator[tuple[int, Path]]:
    """(step, path) of the checkpoints whose COMPLETE verifies, newest first: the newest attempt epoch first (a
    stale attempt's checkpoint never wins over the owner's), then the highest step. Lazy: a checkpoint's files are
    hashed only when the ones before it did not verify (each is as large as the model); invalid ones are skipped
    with a warning."""
    candidates = sorted(((epoch_of(path), step, path) for step, path in list_steps(checkpoints_dir)), key=lambda t: (t[0], t[1]), reverse=True)
    for _, step, path in candidates:
        problem = verify(path)
        if problem is None:
            yield step, path
        else:
            log(f"warning: skipping checkpoint {path}: {problem}")


def latest_complete(checkpoints_dir: str | Path) -> Path | None:
    """The newest checkpoint with a COMPLETE file (epoch, then step), not verified: a cheap look."""
    return next(iter(complete_newest_first(checkpoints_dir)), None)


def latest_valid(checkpoints_dir: str | Path) -> tuple[int, Path] | None:
    """(step, path) of the newest valid checkpoint (see valid_checkpoints), or None."""
    return next(valid_checkpoints(checkpoints_dir), None)


def prune(checkpoints_dir: str | Path, keep: int) -> None:
    """Deletes all but the `keep` newest complete checkpoints (epoch, then step), and leftover .tmp folders."""
    d = Path(checkpoints_dir)
    for p in complete_newest_first(d)[keep:]:
        shutil.rmtree(p, ignore_errors=True)
    _remove_leftovers(d)
