"""Atomic checkpoints (Contract 4).

`checkpoints/step-000120/` is written as `step-000120.tmp/`, every file fsynced, the folder renamed, and a
`COMPLETE` file holding the sha256 of every file is written last. A checkpoint without a valid `COMPLETE` does
not exist: `latest_valid` skips it with a warning and falls back to the one before.
"""
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from .events import log

COMPLETE = "COMPLETE"
_STEP_DIR = re.compile(r"^step-(\d{6,})$")


def step_dir_name(step):
    return f"step-{step:06d}"


def sha256_file(path):
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


def write_complete(folder, extra=None):
    """Writes COMPLETE (sha256 of every other file, recursively) last, fsynced."""
    folder = Path(folder)
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != COMPLETE:
            files[str(p.relative_to(folder))] = sha256_file(p)
    tmp = folder / (COMPLETE + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"files": files, **(extra or {})}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / COMPLETE)
    _fsync_dir(folder)


def verify(folder):
    """None if the folder holds a valid COMPLETE whose hashes match, else the reason it does not."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / COMPLETE).read_text())
        files = manifest["files"]
    except FileNotFoundError:
        return "no COMPLETE file"
    except (ValueError, KeyError, TypeError) as e:
        return f"unreadable COMPLETE file ({e})"
    for name, digest in files.items():
        p = folder / name
        if not p.is_file():
            return f"{name} is missing"
        if sha256_file(p) != digest:
            return f"{name} does not match its sha256"
    return None


def save(checkpoints_dir, step, write_files, extra=None):
    """Writes checkpoints/step-NNNNNN atomically. `write_files(tmp_dir)` writes the payload. Returns its path."""
    return save_atomic(Path(checkpoints_dir) / step_dir_name(step), write_files, {"step": step, **(extra or {})})


def save_atomic(final, write_files, extra=None):
    """Writes a folder as `<final>.tmp`, fsyncs every file, renames it to `final`, then writes COMPLETE last."""
    final = Path(final)
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / (final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_files(tmp)
    for p in tmp.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(parent)
    write_complete(final, extra)
    return final


def list_steps(checkpoints_dir):
    """(step, path) of every checkpoint folder (complete or not), newest first; .tmp folders excluded."""
    d = Path(checkpoints_dir)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def latest_valid(checkpoints_dir):
    """(step, path) of the newest checkpoint whose COMPLETE verifies, or None. Invalid ones are skipped with a warning."""
    for step, path in list_steps(checkpoints_dir):
        problem = verify(path)
        if problem is None:
            return step, path
        log(f"warning: skipping checkpoint {path}: {problem}")
    return None


def prune(checkpoints_dir, keep):
    """Deletes all but the `keep` newest complete checkpoints, and leftover .tmp folders."""
    d = Path(checkpoints_dir)
    complete = [(s, p) for s, p in list_steps(d) if (p / COMPLETE).exists()]
    for _, p in complete[keep:]:
        shutil.rmtree(p, ignore_errors=True)
    for p in d.glob("step-*.tmp"):
        shutil.rmtree(p, ignore_errors=True)
