"""Values of Kubernetes settings as the deploy reads and writes them: the compare operators of
docs/kinds-kubernetes.md on raw flag text, and edits of a command line (argv) that change only
the flags asked for.

This is the deploy's own reading of the catalog params (hardline/benchmarks has the check's):
the deploy decides whether a setting already satisfies its control before it changes anything,
so a compliant node gets no change at all.

    argv = ["kube-scheduler", "--bind-address=0.0.0.0", "--port=0"]
    effective(argv, "bind-address")                 # "0.0.0.0"
    set_flag(argv, "profiling", "false")            # [..., "--port=0", "--profiling=false"]
    passes("eq", "false", True, False, "bool")      # True
"""

from __future__ import annotations

import re
from typing import Any

GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
LIST_OPS = ("has", "nothave", "valid_elements")


def value_type(params: dict[str, Any]) -> str:
    """The compare type of a control: its ``type``, else bool/int from ``value``, list for list
    operators, str otherwise."""
    if params.get("type"):
        return str(params["type"])
    value = params.get("value")
    if params.get("op") in LIST_OPS:
        return "list"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return "str"


def to_text(value: Any) -> str:
    """A value as it is written on a command line: true/false, numbers, comma-joined lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(to_text(v) for v in value)
    return str(value)


def typed(raw: Any, kind: str) -> Any:
    """Raw text (or a YAML value) as a comparable value of ``kind``; ValueError when it is not one."""
    text = to_text(raw).strip()
    if kind == "bool":
        if text in GO_TRUE:
            return True
        if text in GO_FALSE:
            return False
        raise ValueError(f"{text!r} is not a boolean")
    if kind == "int":
        return int(text)
    if kind == "duration":
        return duration_seconds(text)
    if kind == "list":
        return sorted({item.strip() for item in text.split(",") if item.strip()})
    return text


def duration_seconds(text: str) -> float:
    """A Go duration (``4h0m0s``, ``90s``, ``0``) in seconds."""
    if text in ("0", ""):
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.lstrip("+"):
        raise ValueError(f"{text!r} is not a Go duration")
    return sum(float(n) * DURATION_UNITS[u] for n, u in parts)


def map_value(raw: Any, key: str) -> str | None:
    """One key of a ``k=v,k2=v2`` flag or of a YAML map (featureGates); None when absent."""
    if isinstance(raw, dict):
        return to_text(raw[key]) if key in raw else None
    found = None
    for item in to_text(raw).split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip() == key:
            found = value.strip()  # the last one wins, as the component parses it
    return found


def passes(op: str, raw: Any, given: bool, value: Any, kind: str) -> bool:
    """Whether a setting whose value in effect is ``raw`` (None: nothing, not even a default)
    satisfies the operator. ``given``: the value was set somewhere (not a default)."""
    if op == "set":
        return given and raw not in (None, "")
    if op == "unset":
        return not given
    if op not in ("eq", "noteq", "gte", "lte", *LIST_OPS):
        raise ValueError(f"operator {op!r} has no deploy (loopback is kube-proxy's, which is not deployed)")
    if raw is None:
        return False
    try:
        current = typed(raw, kind)
        if op in LIST_OPS:
            wanted = set(typed(value, "list"))
            if op == "has":
                return wanted <= set(current)
            if op == "nothave":
                return not wanted & set(current)
            return bool(current) and set(current) <= wanted
        target = typed(value, kind)
        return {"eq": current == target, "noteq": current != target,
                "gte": current >= target, "lte": current <= target}[op]
    except (ValueError, TypeError):
        return False


# ------------------------------------------------------------------------------ command lines


def occurrences(argv: list[str], name: str, boolean: bool = False) -> list[tuple[int, int, str]]:
    """(index, number of argv items, value) of each ``--name=value``, ``--name value`` or bare
    ``--name`` (true) after argv[0]. A bare boolean flag never takes the next item as its value."""
    found = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg.startswith(f"--{name}="):
            found.append((i, 1, arg[len(name) + 3:]))
        elif arg == f"--{name}":
            if not boolean and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                found.append((i, 2, argv[i + 1]))
                i += 1
            else:
                found.append((i, 1, "true"))
        i += 1
    return found


def effective(argv: list[str], name: str, boolean: bool = False) -> str | None:
    """The flag's value as the component parses it (the last occurrence wins), None if not given."""
    found = occurrences(argv, name, boolean)
    return found[-1][2] if found else None


def remove_flag(argv: list[str], name: str, boolean: bool = False) -> list[str]:
    drop = {i + k for i, n, _ in occurrences(argv, name, boolean) for k in range(n)}
    return [a for i, a in enumerate(argv) if i not in drop]


def set_flag(argv: list[str], name: str, value: str, boolean: bool = False) -> list[str]:
    """``--name=value`` in place of the flag's last occurrence (earlier ones are dropped), or
    inserted where it sorts among the flags when they are sorted (kubeadm sorts them), else last."""
    found = occurrences(argv, name, boolean)
    item = f"--{name}={value}"
    if found:
        index, count, _ = found[-1]
        out = list(argv)
        out[index:index + count] = [item]
        for i, n, _ in reversed(found[:-1]):
            del out[i:i + n]
        return out
    flags = [a for a in argv[1:] if a.startswith("--")]
    names = [f.split("=", 1)[0] for f in flags]
    if names == sorted(names) and flags == argv[1:]:
        position = next((i + 1 for i, n in enumerate(names) if n > f"--{name}"), len(argv))
        return argv[:position] + [item] + argv[position:]
    return argv + [item]


def set_map_key(raw: str | None, key: str, value: str) -> str:
    """``k=v,...`` text with ``key`` set to ``value`` (kept in place, else appended)."""
    items = [i for i in (raw or "").split(",") if i.strip()]
    out, done = [], False
    for item in items:
        if item.partition("=")[0].strip() == key:
            if not done:
                out.append(f"{key}={value}")
                done = True
            continue
        out.append(item)
    if not done:
        out.append(f"{key}={value}")
    return ",".join(out)
