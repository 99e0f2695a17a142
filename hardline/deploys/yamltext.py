"""Edit YAML files as text, changing only the lines of what changes.

A static pod manifest or a kubelet config written by kubeadm is reviewed by people and diffed by
tools; loading and dumping it would rewrite every line (quoting, key order, flow style). These
functions edit the text instead: a command list item, a mapping key, an item appended to a
list. Each result is parsed again and must equal the intended data exactly; where the text
cannot be edited that way (an unusual layout), :func:`rewrite` falls back to a full dump, and
says so, so the outcome is always the data asked for.

    text = set_key(text, "authentication.anonymous.enabled", False)
    text = replace_sequence(text, old_command, new_command)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml


class EditError(Exception):
    """The text could not be edited in place (the caller falls back to a full dump)."""


def scalar(value: Any) -> str:
    """A YAML scalar on one line: ``true``, ``10``, ``--profiling=false``, ``'0'``."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    if text.endswith("\n..."):
        text = text[:-4]
    elif text.endswith("..."):
        text = text[:-3].rstrip()
    if "\n" in text:
        raise EditError(f"{value!r} does not fit on one line")
    return text


def block(value: Any, indent: int) -> list[str]:
    """Lines of a block-style YAML value (map or list) at ``indent`` spaces, lists indentless
    under their key as kubeadm writes them."""
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=False, width=1 << 30)
    return [" " * indent + line + "\n" for line in text.splitlines()]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _neutral(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """End (exclusive) of the value of the key on line ``start - 1`` at ``indent``: the lines
    deeper than it, or list items at its own indent (indentless lists); trailing blank and
    comment lines are left outside."""
    end = start
    i = start
    while i < len(lines):
        line = lines[i]
        if _neutral(line):
            i += 1
            continue
        if _indent(line) > indent or (_indent(line) == indent and line.lstrip().startswith("- ")):
            i += 1
            end = i
            continue
        break
    return end


def _find_key(lines: list[str], start: int, end: int, indent: int, key: str) -> int | None:
    pattern = re.compile(r"^" + " " * indent + re.escape(key) + r":(\s|$)")
    for i in range(start, end):
        if _indent(lines[i]) == indent and pattern.match(lines[i]):
            return i
    return None


def _siblings(lines: list[str], start: int, end: int, indent: int) -> list[tuple[int, str]]:
    found = []
    for i in range(start, end):
        line = lines[i]
        if not _neutral(line) and _indent(line) == indent and not line.lstrip().startswith("- "):
            found.append((i, line.strip().split(":", 1)[0]))
    return found


def _set_in(lines: list[str], start: int, end: int, indent: int, path: list[str], value: Any) -> list[str]:
    key, rest = path[0], path[1:]
    at = _find_key(lines, start, end, indent, key)
    if at is None:  # insert where the key sorts among sorted siblings (kubeadm sorts), else last
        nested: Any = value
        for part in reversed(rest):
            nested = {part: nested}
        new = block({key: nested}, indent)
        siblings = _siblings(lines, start, end, indent)
        names = [name for _, name in siblings]
        position = end
        while position > start and _neutral(lines[position - 1]):
            position -= 1
        if names and names == sorted(names):
            later = [i for i, name in siblings if name > key]
            if later:
                position = later[0]
        return lines[:position] + new + lines[position:]
    line = lines[at]
    inline = line.split(":", 1)[1].strip()
    value_end = _block_end(lines, at + 1, indent)
    if rest:
        if inline in ("", "{}"):
            if inline == "{}":
                lines = lines[:at] + [" " * indent + key + ":\n"] + lines[at + 1:]
            child = next((_indent(lines[i]) for i in range(at + 1, value_end) if not _neutral(lines[i])), indent + 2)
            return _set_in(lines, at + 1, value_end, child, rest, value)
        raise EditError(f"{key} is not a mapping")
    if isinstance(value, (dict, list)) and value:
        new = [" " * indent + key + ":\n"] + block(value, indent + (2 if isinstance(value, dict) else 0))
    else:
        new = [" " * indent + key + ": " + scalar(value) + "\n"]
    return lines[:at] + new + lines[value_end:]


def set_key(text: str, dotted: str, value: Any) -> str:
    """``text`` with the mapping key ``a.b.c`` set to ``value`` (created where missing)."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join(_set_in(lines, 0, len(lines), 0, dotted.split("."), value))


def replace_sequence(text: str, old: list[str], new: list[str]) -> str:
    """The block list whose items are exactly ``old`` (one plain or quoted scalar per line, as
    a manifest's command) replaced by ``new``; unchanged items keep their lines byte for byte."""
    lines = text.splitlines(keepends=True)
    item = re.compile(r"^(\s*)- (.*?)\s*$")
    for start in range(len(lines) - len(old) + 1):
        first = item.match(lines[start])
        if not first:
            continue
        indent = first.group(1)
        run = lines[start:start + len(old)]
        try:
            values = [yaml.safe_load(m.group(2)) if (m := item.match(line)) and m.group(1) == indent else object()
                      for line in run]
        except yaml.YAMLError:
            continue
        if values != old:
            continue
        kept = {value: line for value, line in zip(old, run)}
        out = [kept.get(v) or f"{indent}- {scalar(v)}\n" for v in new]
        return "".join(lines[:start] + out + lines[start + len(old):])
    raise EditError("the list was not found as one item per line")


def append_items(text: str, key: str, items: list[Any], indent: int | None = None) -> str:
    """Items appended to the block list of the only ``key:`` line (at ``indent`` if given)."""
    lines = text.splitlines(keepends=True)
    pattern = re.compile(r"^(\s*)" + re.escape(key) + r":\s*$")
    found = [i for i, line in enumerate(lines) if (m := pattern.match(line)) and (indent is None or len(m.group(1)) == indent)]
    if len(found) != 1:
        raise EditError(f"{len(found)} lines are {key}:")
    at = found[0]
    key_indent = _indent(lines[at])
    end = _block_end(lines, at + 1, key_indent)
    children = [lines[i] for i in range(at + 1, end) if not _neutral(lines[i])]
    item_indent = _indent(children[0]) if children else key_indent
    if children and not children[0].lstrip().startswith("- "):
        raise EditError(f"{key} is not a list")
    return "".join(lines[:end] + block(items, item_indent) + lines[end:])


def rewrite(text: str, expected: Any, *edits: Callable[[str], str]) -> tuple[str, bool]:
    """Apply the text edits; the result must parse to ``expected``. Returns (text, in_place):
    when an edit fails or the result differs, the whole document is dumped instead."""
    try:
        for edit in edits:
            text = edit(text)
        if yaml.safe_load(text) == expected:
            return text, True
    except (EditError, yaml.YAMLError):
        pass
    return yaml.safe_dump(expected, default_flow_style=False, sort_keys=False), False
