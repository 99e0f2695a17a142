"""The gather's output travels as one base64 line (hardline.benchmarks.remote.packed/unpacked):
run with a real sh, with and without base64(1) on the host, and with output that is not plain
text or that does not end with a newline; the script's exit code, stderr and traps still hold."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hardline.benchmarks.remote import PACKED, packed, unpacked

SCRIPT = ("trap 'echo trapped >&2' EXIT\n"
          "printf 'first line\\n\\n  indented\\ttab\\n'\n"
          "printf '\\303\\244 \\377 raw\\n'  # UTF-8 and one byte that is not\n"
          "echo oops >&2\n"
          "printf 'no final newline'")
EXPECTED = "first line\n\n  indented\ttab\n\u00e4 \ufffd raw\nno final newline"


def sh(script: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"PATH": path} if path else {})}
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, env=env, timeout=30)


def test_output_as_one_line_with_base64():
    done = sh(packed(SCRIPT))
    stdout = done.stdout.decode()
    assert stdout.startswith(PACKED + "\n") and stdout.count("\n") == 2  # marker, one data line
    assert unpacked(stdout.rstrip("\n")) == EXPECTED
    assert done.stderr.decode() == "oops\ntrapped\n"


def test_plain_output_without_base64(tmp_path: Path):
    bin_dir = tmp_path / "bin"  # a host whose PATH has a shell's tools but no base64
    bin_dir.mkdir()
    for tool in ("printf", "echo"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    done = sh(packed(SCRIPT), path=str(bin_dir))
    stdout = done.stdout.decode(errors="replace")
    assert not stdout.startswith(PACKED) and unpacked(stdout) == stdout == EXPECTED


def test_damaged_packed_output_is_an_error_not_text():
    with pytest.raises(ValueError):
        unpacked(f"{PACKED}\nnot*base64!")


def test_text_that_only_mentions_the_marker_is_left_alone():
    text = f"section\n{PACKED}\n"
    assert unpacked(text) == text
