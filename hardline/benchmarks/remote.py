"""Child process that reaches hosts through pyinfra's own connectors and runs the gather scripts.

Verification uses exactly what `pyinfra INVENTORY deploys/harden.py` uses: pyinfra's connector
for each host (@local, @docker, @ssh with ~/.ssh/config, ssh_config_file, ssh_proxy_command /
ProxyJump, keys and passwords per host, @vagrant, ...) and its privilege escalation (`_sudo`,
`_sudo_user`, `_su_user`...) from host data. pyinfra does its I/O with gevent, whose monkey
patching would deadlock a process that already runs threads (a pytest session, the parent's
thread pool), so it runs here, in a child process of its own.

Host keys: pyinfra's default policy (accept-new) trusts an unknown host on first contact. An
audit must not: unless the inventory sets ssh_strict_host_key_checking itself, verification uses
"yes", and an unknown or changed host key makes the host ERROR.

Protocol: the parent writes pickled requests to stdin, one at a time: {"env", "parallel",
"connect_timeout", "hosts": [{"name", "groups", "data", "needs", "paths", "timeout"}]}; for each,
the child writes a stream of pickled ("progress", name, seconds, facts_or_error) tuples to
stdout, one per host as it finishes, then ("done",). The child serves requests until stdin
closes, so a process that verifies many times pays its start-up once. Anything pyinfra prints
goes to stderr.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from typing import Any


def _serve(request: dict[str, Any], out) -> None:
    os.environ.clear()
    os.environ.update(request["env"])
    from gevent.pool import Pool
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments
    from pyinfra.api.command import QuoteString, StringCommand
    from pyinfra.context import ctx_host, ctx_state

    from hardline.benchmarks.gather import gather

    specs = {h["name"]: h for h in request["hosts"]}
    groups: dict[str, list[str]] = {}
    for spec in specs.values():
        for group in spec["groups"]:
            groups.setdefault(group, []).append(spec["name"])
    names = [(name, {"ssh_strict_host_key_checking": "yes", **spec["data"]}) for name, spec in specs.items()]
    inventory = Inventory((names, {}), **{g: (members, {}) for g, members in groups.items()})
    state = State(inventory, Config(CONNECT_TIMEOUT=request["connect_timeout"]))

    def one(host) -> tuple[str, Any, float]:
        started = time.monotonic()
        spec = specs[host.name]
        with ctx_state.use(state), ctx_host.use(host):
            try:
                host.connect(raise_exceptions=True)
                arguments, _ = pop_global_arguments(state, host, {})
                connector_args = {k: v for k, v in arguments.items() if k in CONNECTOR_ARGUMENT_KEYS}
                connector_args["_timeout"] = spec["timeout"]

                def run(script: str) -> str:
                    try:
                        _ok, output = host.run_shell_command(StringCommand("sh", "-c", QuoteString(script)),
                                                             **connector_args)
                    except TimeoutError:
                        raise RuntimeError(f"no answer within {spec['timeout']} s "
                                           "(hardline_command_timeout): the host was given up") from None
                    if not output.stdout and not _ok:
                        raise RuntimeError(f"gather script failed: {output.stderr.strip()[:300]}")
                    return output.stdout + "\n"

                result: Any = gather(run, spec["data"], spec["needs"], spec["paths"])
            except Exception as err:  # unreachable, refused host key, auth...: the host is ERROR
                result = RuntimeError(_describe(err))
            finally:
                try:
                    host.disconnect()
                except Exception:
                    pass
        return host.name, result, time.monotonic() - started

    pool = Pool(max(1, int(request["parallel"])))
    for name, result, seconds in pool.imap_unordered(one, list(inventory)):
        pickle.dump(("progress", name, seconds, result), out)
        out.flush()
    pickle.dump(("done",), out)
    out.flush()


def _describe(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    if type(err).__name__ == "ConnectError" and "host key" not in text.lower() and "Server" in text:
        return f"host key not trusted: {text}"
    return text


def main() -> None:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever pyinfra or paramiko print must not corrupt the protocol
    sys.stdout = sys.stderr
    from gevent import monkey

    monkey.patch_all()
    while True:
        try:
            request = pickle.load(sys.stdin.buffer)
        except EOFError:
            return
        _serve(request, out)


if __name__ == "__main__":
    main()
