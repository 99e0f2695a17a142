"""CIS Docker 5.1 and section 7 (swarm): swarm items apply only where swarm mode is active."""

from __future__ import annotations

import ipaddress
from typing import Any

from hardline.benchmarks.gather.core import HostFacts
from hardline.results import FAIL, PASS, SKIP, Verdict


def _swarm(facts: HostFacts) -> dict[str, Any]:
    return facts.need("info").get("Swarm") or {}


def check_swarm_mode(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict:
    """5.1: swarm mode is active only on hosts the inventory says belong to a swarm."""
    state = _swarm(facts).get("LocalNodeState") or "inactive"
    wanted = data["docker_swarm_enabled"]
    expected = "swarm mode active" if wanted else "swarm mode inactive (docker_swarm_enabled is false)"
    ok = wanted or state != "active"
    evidence = [] if ok else ["fix: docker swarm leave (or set docker_swarm_enabled: true for a swarm node)"]
    found = f"swarm LocalNodeState = {state}"
    if wanted and state != "active":
        found += " (inventory expects a swarm node; nothing insecure about that)"
    return Verdict(PASS if ok else FAIL, expected=expected, found=found, evidence=evidence)


def _not_applicable(facts: HostFacts, manager_only: bool) -> Verdict | None:
    swarm = _swarm(facts)
    if swarm.get("LocalNodeState") != "active":
        return Verdict(SKIP, found=f"swarm mode is not active on this host (LocalNodeState = "
                                  f"{swarm.get('LocalNodeState') or 'inactive'})")
    if manager_only and not swarm.get("ControlAvailable"):
        return Verdict(SKIP, found="this node is a swarm worker: the item is verified on the managers")
    return None


def _wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return host in ("",)  # an interface name (eth0) is specific


def check_swarm(params: dict[str, Any], facts: HostFacts, data: dict[str, Any]) -> Verdict | list[Verdict]:
    rule = params["rule"]
    skip = _not_applicable(facts, manager_only=rule in ("managers", "autolock", "overlay_encrypted"))
    if skip:
        return skip
    swarm = _swarm(facts)
    if rule == "managers":
        managers, limit = swarm.get("Managers") or 0, data["docker_swarm_max_managers"]
        problems = []
        if managers > limit:
            problems.append(f"more than docker_swarm_max_managers ({limit})")
        if managers % 2 == 0:
            problems.append("an even count tolerates no more failures than one manager less")
        found = f"{managers} managers of {swarm.get('Nodes')} nodes" + (f": {'; '.join(problems)}" if problems else "")
        return Verdict(FAIL if problems else PASS, expected=f"an odd number of managers, at most {limit}", found=found,
                       evidence=["fix: docker node demote <node>"] if problems else [])
    if rule == "listen_address":
        state = facts.need("swarm_state")
        listen = state.get("ListenAddr") or ""
        host, _, port = listen.rpartition(":")
        sockets = [f"{a}:{p}" for a, p in facts.need("dockerd_listen")
                   if p in ({int(port)} if port.isdigit() else set()) | {7946} and ipaddress.ip_address(a).is_unspecified]
        problems = ([f"swarm listen address {listen} is every interface"] if _wildcard(host) else []) + \
                   ([f"dockerd listens on {', '.join(sorted(set(sockets)))}"] if sockets else [])
        found = "; ".join(problems) or f"swarm listens on {listen}"
        return Verdict(FAIL if problems else PASS, expected="swarm ports (2377, 7946) bound to a specific address",
                       found=found, evidence=["fix: docker swarm init/join --listen-addr <ip>:2377 --advertise-addr <ip>"]
                       if problems else [])
    if rule == "autolock":
        spec = (swarm.get("Cluster") or {}).get("Spec") or {}
        on = bool((spec.get("EncryptionConfig") or {}).get("AutoLockManagers"))
        return Verdict(PASS if on else FAIL, expected="managers auto-lock (AutoLockManagers true)",
                       found=f"AutoLockManagers = {str(on).lower()}",
                       evidence=[] if on else ["fix: docker swarm update --autolock=true (keep the unlock key safe)"])
    if rule == "overlay_encrypted":
        networks = facts.need("overlay_networks")
        if not networks:
            return Verdict(SKIP, expected="every overlay network encrypted", found="no overlay networks: nothing to judge")
        verdicts = []
        for net in sorted(networks, key=lambda n: n.get("Name", "")):
            on = "encrypted" in (net.get("Options") or {})
            fix = ("docker network rm ingress; docker network create --driver overlay --ingress --opt encrypted ingress"
                   if net.get("Ingress") else f"recreate with docker network create -d overlay --opt encrypted {net.get('Name')}")
            verdicts.append(Verdict(PASS if on else FAIL, expected="overlay network encrypted (--opt encrypted)",
                                    found=f"options {sorted(net.get('Options') or {})}", evidence=[] if on else [f"fix: {fix}"],
                                    subject=f"network {net.get('Name')} {str(net.get('Id'))[:12]}"))
        return verdicts
    raise ValueError(f"unknown swarm rule {rule}")
