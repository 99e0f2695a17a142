"""Helpers every lab module uses: errors meant for humans, commands with their output kept,
cache directories outside the repository, and a lock between processes."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the repository checkout


class LabError(Exception):
    """A lab failure with a message meant for humans (no traceback)."""


def cache_root() -> Path:
    """Where built images and boxes live: ``$HARDLINE_CACHE_DIR`` or ``~/.cache/hardline``."""
    env = os.environ.get("HARDLINE_CACHE_DIR")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "hardline"


def recipe_key(recipe: dict[str, Any]) -> str:
    """Short stable hash of a recipe: what a cached artefact was built from."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def log(msg: str = "", end: str = "\n") -> None:
    """Progress goes to stderr so that `lab ssh CMD` output stays clean."""
    print(msg, end=end, file=sys.stderr, flush=True)


def require_tools(*tools: str, hint: str = "run `bash scripts/setup.sh lab`") -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)} ({hint})")


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"{what} needs root; run it as root")


def run(cmd: Sequence[str], log_file: Path | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise LabError with the tail of its output."""
    if log_file is not None:
        with log_file.open("a") as fh:
            fh.write(f"\n$ {shlex.join(cmd)}\n")
            fh.flush()
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, text=True, **kw)
        if proc.returncode != 0:
            raise LabError(f"{cmd[0]} failed (rc {proc.returncode}):\n{tail(log_file, 30)}\n(full log: {log_file})")
        return proc
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        out = (proc.stderr or proc.stdout).strip().splitlines()[-10:]
        raise LabError(f"{shlex.join(cmd)} failed (rc {proc.returncode}): " + "\n".join(out))
    return proc


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} not readable)"
    # The serial console is full of ANSI colour codes from systemd.
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]|\r", "", text)
    return "\n".join(text.splitlines()[-lines:])


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Serialise builds and VM lifecycles that share ``directory`` between processes."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (deepest first)."""
    prefix = str(path.resolve())
    points = []
    with open("/proc/self/mounts") as fh:
        for line in fh:
            point = line.split()[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def safe_rmtree(path: Path) -> None:
    """Delete a build tree, never following into mounts a failed build left.

    rmtree would happily descend into a bind-mounted /dev or /proc and delete
    the host's files, so unmount first and refuse if anything is still mounted.
    """
    if not path.exists():
        return
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    if left := mounts_under(path):
        raise LabError(f"refusing to delete {path}: still mounted: {', '.join(left)}")
    shutil.rmtree(path)
