"""In the pyinfra child process (hardline.worker): reach hosts through pyinfra's own connectors
and run commands there.

Verification uses exactly what `pyinfra INVENTORY deploys/harden.py` uses: pyinfra's connector
for each host (@local, @docker, @ssh with ~/.ssh/config, ssh_config_file, ProxyJump /
ProxyCommand, keys and passwords per host, @vagrant, @chroot, ...) and its privilege escalation
(`_sudo`, `_sudo_user`, `_su_user`...) from host data. pyinfra does its I/O with gevent, so this
runs in the child process hardline.worker keeps (patched for gevent), never in the caller.

Host keys: pyinfra's default policy (accept-new) trusts an unknown host on first contact. An
audit must not: unless the inventory sets ssh_strict_host_key_checking itself, verification uses
"yes", and an unknown or changed host key makes the host ERROR.

Requests (hardline.worker's protocol; the child serves them until stdin closes, so a process that
verifies many times pays its start-up once):

- {"op": "gather", "env", "parallel", "connect_timeout", "hosts": [{"name", "groups", "data",
  "needs", "paths", "timeout"}]}: the child writes ("progress", name, seconds, facts_or_error)
  per host as each finishes, then ("done",).
- {"op": "run", "env", "connect_timeout", "host": {"name", "groups", "data", "timeout"},
  "command"}: one command on one host (testinfra's backend: hardline.benchmarks.testinfra_host);
  the child answers ("result", exit_code, stdout, stderr) or ("error", text). The connection is
  kept for the next command on the same host.
"""

from __future__ import annotations

import base64
import pickle
import time
from collections.abc import Callable
from typing import Any

_SESSIONS: dict[str, Any] = {}  # connected hosts kept between "run" requests


def _tune_paramiko() -> None:
    """Less CPU per SSH packet, same security: prefer AES-GCM (an AEAD cipher, verified in C;
    paramiko lists it last, after the CTR and CBC ciphers whose HMAC it checks) while keeping
    every cipher paramiko offers, and compare MACs with hmac.compare_digest (constant time, in C)
    instead of paramiko's Python loop over the bytes. 50 hosts x 20 containers: ~9,000 packets."""
    import hmac

    from paramiko import transport, util

    # paramiko's private cipher list and its MAC comparison: not in its typed API (types-paramiko)
    ciphers = transport.Transport._preferred_ciphers  # type: ignore[attr-defined]
    aead = tuple(c for c in ciphers if "-gcm@" in c)
    transport.Transport._preferred_ciphers = aead + tuple(c for c in ciphers if c not in aead)  # type: ignore[attr-defined]
    util.constant_time_bytes_eq = hmac.compare_digest  # type: ignore[assignment]  # same (a, b) -> bool


def _open(specs: list[dict[str, Any]], connect_timeout: int):
    """A pyinfra State over these hosts (their groups and data as the inventory has them)."""
    _tune_paramiko()
    from pyinfra.api import Config, Inventory, State

    groups: dict[str, list[str]] = {}
    for spec in specs:
        for group in spec["groups"]:
            groups.setdefault(group, []).append(spec["name"])
    names = [(s["name"], {"ssh_strict_host_key_checking": "yes", **s["data"]}) for s in specs]
    inventory = Inventory((names, {}), **{g: (members, {}) for g, members in groups.items()})
    return State(inventory, Config(CONNECT_TIMEOUT=connect_timeout))


def _runner(state, host, timeout: int) -> Callable[[str], tuple[bool, str, str]]:
    """run(script) -> (succeeded, stdout, stderr) of `sh -c script` on a connected host."""
    from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments
    from pyinfra.api.command import QuoteString, StringCommand

    arguments, _ = pop_global_arguments(state, host, {})
    connector_args = {k: v for k, v in arguments.items() if k in CONNECTOR_ARGUMENT_KEYS}
    connector_args["_timeout"] = timeout

    def run(script: str) -> tuple[bool, str, str]:
        try:
            ok, output = host.run_shell_command(StringCommand("sh", "-c", QuoteString(script)), **connector_args)
        except TimeoutError:
            raise RuntimeError(f"no answer within {timeout} s (hardline_command_timeout): the host was given up") from None
        return ok, output.stdout, output.stderr

    return run


PACKED = "@@HL-BASE64"


def packed(script: str) -> str:
    """The gather script with its output as one base64 line when the host has base64(1): pyinfra's
    connectors read output line by line through Python (paramiko's file, one decode and one
    object per line), ~800 lines and ~15 ms of hardline's CPU per Docker host with 20 containers;
    one line costs a fraction of that, and the host one base64 process. Without base64 the
    output comes as it is."""
    return (f"hl_gather() {{\n{script}\n}}\n"
            f"if printf '' | base64 -w 0 >/dev/null 2>&1; then echo {PACKED}; hl_gather | base64 -w 0; echo; "
            "else hl_gather; fi")


def unpacked(stdout: str) -> str:
    """The script's own output from what packed() printed (a damaged base64 line: ValueError)."""
    head, newline, rest = stdout.partition("\n")
    if head != PACKED:
        return stdout
    return base64.b64decode("".join(rest.split()), validate=True).decode("utf-8", "replace")


def _describe(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    if "found in known_hosts" in text and ("No host key" in text or "not found" in text):
        return (f"{text}: unknown host key; hardline verify does not trust a host on first use: add its key to "
                "known_hosts (or set ssh_strict_host_key_checking in the inventory)")
    return text


def _gather(request: dict[str, Any], out) -> None:
    from gevent.pool import Pool
    from pyinfra.context import ctx_host, ctx_state

    from hardline.benchmarks.gather import gather

    specs = {h["name"]: h for h in request["hosts"]}
    state = _open(list(specs.values()), request["connect_timeout"])

    def one(host) -> tuple[str, Any, float]:
        started = time.monotonic()
        spec = specs[host.name]
        with ctx_state.use(state), ctx_host.use(host):
            try:
                host.connect(raise_exceptions=True)
                run_sh = _runner(state, host, spec["timeout"])

                def run(script: str) -> str:
                    ok, stdout, stderr = run_sh(packed(script))
                    if not stdout and not ok:
                        raise RuntimeError(f"gather script failed: {stderr.strip()[:300]}")
                    return unpacked(stdout) + "\n"

                result: Any = gather(run, spec["data"], spec["needs"], spec["paths"])
                # the parent reads the parsed values: sections go back with exit code and stderr
                # only (their output is half of what would be pickled, 100 KB and more per host)
                result.sections = {name: (rc, "", err) for name, (rc, _out, err) in result.sections.items()}
            except Exception as err:  # unreachable, refused host key, auth...: the host is ERROR
                result = RuntimeError(_describe(err))
            finally:
                try:
                    host.disconnect()
                except Exception:
                    pass
        return host.name, result, time.monotonic() - started

    pool = Pool(max(1, int(request["parallel"])))
    for name, result, seconds in pool.imap_unordered(one, list(state.inventory)):
        pickle.dump(("progress", name, seconds, result), out)
        out.flush()
    pickle.dump(("done",), out)
    out.flush()


def _run(request: dict[str, Any], out) -> None:
    """One command on one host, on a connection kept for the next command there."""
    from pyinfra.context import ctx_host, ctx_state

    spec = request["host"]
    key = repr((spec["name"], sorted(spec["data"].items(), key=repr)))
    try:
        if key not in _SESSIONS:
            state = _open([spec], request["connect_timeout"])
            (host,) = list(state.inventory)
            with ctx_state.use(state), ctx_host.use(host):
                host.connect(raise_exceptions=True)
            _SESSIONS[key] = (state, host, _runner(state, host, spec["timeout"]))
        state, host, run = _SESSIONS[key]
        with ctx_state.use(state), ctx_host.use(host):
            # pyinfra tells success, not the exit code: the command prints it after its output
            # (in a subshell: an `exit` of the command must not skip the report)
            _ok, stdout, stderr = run("(\n" + request["command"] + "\n)\nprintf '\\n@@HL-RC %s\\n' \"$?\"")
        body, marker, code = stdout.rpartition("\n@@HL-RC ")
        if not marker and stdout.startswith("@@HL-RC "):
            body, code = "", stdout[len("@@HL-RC "):]
        if not code.strip().isdigit():
            raise RuntimeError(f"the command's exit code was not reported (output: {stdout[-200:]!r})")
        pickle.dump(("result", int(code.strip()), body, stderr), out)
    except Exception as err:
        _SESSIONS.pop(key, None)
        pickle.dump(("error", _describe(err)), out)
    out.flush()


def serve(request: dict[str, Any], out) -> None:
    """Answer one "gather" or "run" request on ``out``."""
    (_run if request["op"] == "run" else _gather)(request, out)
