"""The compare operators of process_flag, kubelet_setting and proxy_setting
(docs/kinds-kubernetes.md "Compare operators"): typed values as the components parse them.

``judge(params, given, value)`` answers whether the value in effect meets the control: ``given``
says whether the setting was given anywhere (flag, variable, config key); when it was not,
``value`` is the built-in default the caller found (or None when none is known).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

TRUE = {"1", "t", "T", "TRUE", "true", "True"}  # Go's strconv.ParseBool
FALSE = {"0", "f", "F", "FALSE", "false", "False"}
DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
LIST_OPS = ("has", "nothave", "valid_elements")


class BadValue(ValueError):
    """A value the component could not have parsed as the type the control compares."""


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise BadValue(f"{value!r} is not a boolean")


def parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise BadValue(f"{value!r} is not an integer")
    try:
        return int(str(value).strip())
    except ValueError:
        raise BadValue(f"{value!r} is not an integer") from None


def parse_duration(value: Any) -> float:
    """Seconds of a Go duration (``4h0m0s``, ``300ms``, ``0``)."""
    text = str(value).strip()
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-")
    if text == "0":
        return 0.0
    if not text or DURATION.sub("", text):
        raise BadValue(f"{value!r} is not a Go duration")
    return sign * sum(float(n) * UNITS[u] for n, u in DURATION.findall(text))


def parse_list(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def host_of(value: Any) -> str:
    text = str(value).strip()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        return text.partition(":")[0]
    return text


def is_loopback(value: Any) -> bool:
    host = host_of(value)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def value_type(params: dict[str, Any]) -> str:
    """The declared type, else what ``value`` is (bool, int), list for list operators, else str."""
    if params.get("type"):
        return str(params["type"])
    value = params.get("value")
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if params["op"] in LIST_OPS:
        return "list"
    if params["op"] == "loopback":
        return "hostport"
    return "str"


def typed(value: Any, kind: str) -> Any:
    if kind == "bool":
        return parse_bool(value)
    if kind == "int":
        return parse_int(value)
    if kind == "duration":
        return parse_duration(value)
    if kind == "list":
        return set(parse_list(value))
    return "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))


def select_key(value: Any, key: str) -> tuple[bool, Any]:
    """(present, value) of one key of a ``k=v,k2=v2`` flag or of a map setting."""
    if isinstance(value, dict):
        return (key in value), value.get(key)
    for part in parse_list(value):
        name, _, item = part.partition("=")
        if name.strip() == key:
            return True, item.strip()
    return False, None


def expectation(params: dict[str, Any]) -> str:
    """The requirement in words, for the report's 'expected'."""
    op, value = params["op"], params.get("value")
    shown = ",".join(map(str, value)) if isinstance(value, list) else str(value).lower() if isinstance(value, bool) else value
    return {
        "eq": f"= {shown}", "noteq": f"!= {shown}", "gte": f">= {shown}", "lte": f"<= {shown}",
        "set": "set" + (" to an existing file" if params.get("path_exists") else ""),
        "unset": "not set anywhere", "has": f"includes {shown}", "nothave": f"excludes {shown}",
        "valid_elements": f"only elements of {shown}", "loopback": "a loopback address",
    }[op]


def judge(params: dict[str, Any], given: bool, value: Any) -> tuple[bool, str]:
    """(passes, why) for one setting. ``value`` is the value in effect: given, or the default
    (None when neither: then only ``unset`` can pass)."""
    op = params["op"]
    if op == "unset":
        return (not given), ("given" if given else "given nowhere")
    if op == "set":
        ok = given and value is not None and str(value).strip() != ""
        return ok, ("set" if ok else "given but empty" if given else "not set (a default does not count)")
    if value is None:
        return False, "not set and no built-in value known"
    kind = value_type(params)
    try:
        if op == "loopback":
            return is_loopback(value), f"host {host_of(value)!r} is {'' if is_loopback(value) else 'not '}loopback"
        have = typed(value, kind)
        if op in LIST_OPS:
            want = set(parse_list(params["value"]))
            if op == "has":
                missing = sorted(want - have)
                return not missing, f"missing {','.join(missing)}" if missing else "has all"
            if op == "nothave":
                bad = sorted(want & have)
                return not bad, f"has {','.join(bad)}" if bad else "has none of them"
            extra = sorted(have - want)
            if not have:
                return False, "empty list"
            return not extra, f"also {','.join(extra)}" if extra else "every element allowed"
        want = typed(params["value"], kind)
        if op == "eq":
            return have == want, "equal" if have == want else "differs"
        if op == "noteq":
            return have != want, "differs" if have != want else "equal"
        number = typed(value, "int") if kind != "duration" else have
        limit = typed(params["value"], "int") if kind != "duration" else want
        ok = number >= limit if op == "gte" else number <= limit
        return ok, f"{number} {'>=' if op == 'gte' else '<='} {limit} is {str(ok).lower()}"
    except BadValue as err:
        return False, str(err)


def show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)
