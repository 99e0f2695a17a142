"""daemon_option and daemon_tls checks, on the effective configuration of the running dockerd."""

from __future__ import annotations

import json
from typing import Any

from hardline.benchmarks.gather.core import HostFacts
from hardline.benchmarks.gather.docker import effective
from hardline.results import FAIL, PASS, SKIP, Verdict


def _show(value: Any) -> str:
    return json.dumps(value)


def _icc_runtime(facts: HostFacts) -> str | None:
    """The default bridge's own icc setting, when the bridge network exists."""
    options = facts.values.get("bridge")
    if options:
        return options.get("com.docker.network.bridge.enable_icc")
    return None


def _holds(op: str, actual: Any, want: Any) -> bool:
    if op == "eq":
        return actual == want or (actual in (None, "") and want in (None, ""))
    if op == "empty":
        return not actual
    if op == "nonempty":
        return bool(actual)
    if op == "not_in":
        return actual not in want
    if op == "no_prefix":
        return not any(str(item).startswith(want) for item in actual or [])
    raise ValueError(f"unknown op {op}")


def _expectation(key: str, op: str, want: Any) -> str:
    return {
        "eq": f"{key} = {_show(want)}",
        "empty": f"{key} empty",
        "nonempty": f"{key} not empty",
        "not_in": f"{key} not one of {_show(want)}",
        "no_prefix": f"no {key} entry starting with {want!r}",
    }[op]


# Spellings dockerd treats as the same value: userns-remap "default" is the dockremap user.
SAME_AS = {"userns-remap": {"default": "dockremap", "dockremap:dockremap": "dockremap"}}


def _normal(key: str, value: Any) -> Any:
    return SAME_AS.get(key, {}).get(value, value) if isinstance(value, str) else value


def _differs(key: str, actual: Any, inventory: Any) -> str:
    """The note of a passing value that is not the inventory's (drift lists it), or ''."""
    if actual == inventory or (actual in (None, "") and inventory in (None, "")):
        return ""
    if _normal(key, actual) == _normal(key, inventory):
        return f"differs from inventory only in spelling: {key} = {_show(actual)}, inventory says {_show(inventory)}"
    return f"differs from inventory: {key} = {_show(actual)}, inventory says {_show(inventory)}"


def check_daemon_option(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """The running daemon's value of params key satisfies the benchmark's requirement, params
    op/value (and not_in, if any). ``set`` is the inventory's choice, what the deploy writes: a
    passing value other than it is PASS with a "differs from inventory" note, never a FAIL."""
    eff = effective(facts)
    key, op, want = params["key"], params["op"], params.get("value")
    actual = eff.get(key)
    ok = _holds(op, actual, want)
    expected = _expectation(key, op, want)
    if "not_in" in params:
        ok = ok and _holds("not_in", actual, params["not_in"])
        expected += f" and not one of {_show(params['not_in'])}"
    evidence = []
    if key in eff.notes:
        evidence.append(eff.notes[key])
    if key == "icc":
        bridge = _icc_runtime(facts)
        if bridge is not None:
            evidence.append(f"default bridge network reports enable_icc={bridge}")
            ok = ok and (bridge == "false") == (want is False)
    if key == "userns-remap" and ok and actual:
        security = facts.need("info").get("SecurityOptions") or []
        if "name=userns" not in security:
            ok = False
            evidence.append(f"docker info SecurityOptions {security} lacks name=userns: remapping is not active")
    found = f"{key} = {_show(actual)} ({eff.source(key)})"
    differs = _differs(key, actual, params["set"]) if ok and "set" in params else ""
    return Verdict(PASS if ok else FAIL, expected=expected, found=found, evidence=evidence, differs=differs)


def check_daemon_tls(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """A TCP listener requires TLS with client verification (tlsverify + CA, cert and key)."""
    eff = effective(facts)
    hosts = list(eff.get("hosts") or [])
    tcp = [h for h in hosts if h.startswith("tcp://")]
    expected = "TCP listeners require tlsverify with tlscacert, tlscert and tlskey"
    if not tcp:
        return Verdict(SKIP, expected=expected, found=f"no TCP listener, nothing to judge (hosts: "
                       f"{_show(hosts or ['default unix socket'])})")
    missing = [k for k in ("tlscacert", "tlscert", "tlskey") if not eff.get(k)]
    problems = []
    if eff.get("tlsverify") is not True:
        problems.append("tlsverify is not true (clients are not authenticated)")
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    found = f"listens on {', '.join(tcp)}; " + ("; ".join(problems) or "tlsverify with CA, cert and key")
    return Verdict(FAIL if problems else PASS, expected=expected, found=found)
