"""Kubernetes operations: replace a static pod manifest or the kubelet's files, wait until the
component runs with them and is healthy, and roll back with its log tail if it does not.

Each change is one shell program sent as one command: it checks that the file is still the one
the deploy read (sha256), keeps a copy in the backup directory, installs the new file
atomically (a dot file beside it, then ``mv``: the kubelet ignores dot files in its manifest
directory), waits for the component and, on timeout, puts every file back, waits for the
component again and fails with its log. File contents travel base64-encoded and every other
value through ``shlex.quote``, so nothing from inventory or from the node is run as code.
Operations decide from the state the deploy gathered and yield nothing when there is nothing
to change; the unified diff of a change is printed, with ``--dry`` too.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import shlex

import click
from pyinfra import host
from pyinfra.api import StringCommand, operation
from pyinfra.api.command import QuoteString


def _q(value: object) -> str:
    return shlex.quote(str(value))


def show_diff(path: str, old: str, new: str) -> None:
    """The change as a unified diff on stderr, named ``host:path`` as hardline drift reads it."""
    diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"{host.name}:{path}", "desired"))
    click.echo(diff, err=True)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def argv_sum(argv: list[str]) -> str:
    """sha256 of a command line as /proc/PID/cmdline holds it."""
    return hashlib.sha256(("\0".join(argv) + "\0").encode()).hexdigest()


_COMMON = r"""
set -u
stamp=$(date +%Y%m%d%H%M%S)
umask 077
mkdir -p "$backup_dir" && chmod 700 "$backup_dir" || { echo "hardline: cannot create $backup_dir" >&2; exit 1; }
unchanged() { [ "$(cat "$1" 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$2" ]; }
put() {  # path base64 -> path, same owner and mode, atomically
  tmp="$(dirname "$1")/.$(basename "$1").hardline"
  printf '%s' "$2" | base64 -d > "$tmp" && chmod --reference="$1" "$tmp" && chown --reference="$1" "$tmp" \
    && mv -f "$tmp" "$1" || { rm -f "$tmp"; return 1; }
}
keep() { cp -p "$1" "$backup_dir/$(basename "$1").$stamp" && echo "$backup_dir/$(basename "$1").$stamp"; }
restore() { tmp="$(dirname "$2")/.$(basename "$2").hardline"; cp -p "$1" "$tmp" && mv -f "$tmp" "$2"; }
pid_with() {  # comm (15 chars) and cmdline sha256 -> pid of a process running exactly that
  for d in /proc/[0-9]*; do
    read -r c 2>/dev/null < "$d/comm" || continue
    [ "$c" = "$1" ] || continue
    [ "$(sha256sum < "$d/cmdline" 2>/dev/null | cut -d' ' -f1)" = "$2" ] && { echo "${d#/proc/}"; return 0; }
  done
  return 1
}
alone() {  # pid: no other process of the component ($comm) runs beside it (a replaced one has exited)
  [ -n "${comm:-}" ] || return 0
  for d in /proc/[0-9]*; do
    read -r c 2>/dev/null < "$d/comm" || continue
    [ "$c" = "$comm" ] && [ "${d#/proc/}" != "$1" ] && return 1
  done
  return 0
}
stable() {  # command... : healthy three times in a row, 2 s apart, with the same pid ($pid), alone
  n=0; end=$(( $(date +%s) + timeout )); last=""
  while [ "$(date +%s)" -lt "$end" ]; do
    if now=$(current) && healthy && alone "$now"; then
      if [ "$now" = "$last" ]; then n=$((n + 1)); else n=1; last=$now; fi
      [ "$n" -ge 3 ] && return 0
    else n=0; fi
    sleep 2
  done
  return 1
}
"""


def static_pod_script(path: str, current: str, new: str, process: str, argv_old: list[str], argv_new: list[str],
                      health: str, timeout: int, backup_dir: str, log_glob: str) -> str:
    """The shell program that swaps one static pod manifest (see the module docstring)."""
    comm = process[:15]
    return "\n".join([
        f"path={_q(path)} backup_dir={_q(backup_dir)} timeout={int(timeout)} comm={_q(comm)}",
        _COMMON,
        f"healthy() {{ {health} >/dev/null 2>&1; }}",
        f"want={_q(argv_sum(argv_new))}",
        'current() { pid_with "$comm" "$want"; }',
        (f'unchanged "$path" {_q(sha256(current))} || {{ echo "hardline: $path changed since the deploy read it; '
        'not replaced" >&2; exit 1; }'),
        'backup=$(keep "$path") || exit 1',
        f'put "$path" {_q(base64.b64encode(new.encode()).decode())} || {{ echo "hardline: could not write $path" >&2; exit 1; }}',
        f'if stable; then echo "hardline: {process} runs the new $path and is healthy (previous kept as $backup)"; exit 0; fi',
        f"log=$(tail -n 25 \"$(ls -t {log_glob} 2>/dev/null | head -n 1)\" 2>/dev/null)",
        'restore "$backup" "$path"',
        f"want={_q(argv_sum(argv_old))}",
        'if stable; then state="healthy again with the previous manifest"; else state="STILL NOT HEALTHY"; fi',
        (f'echo "hardline: {process} did not run healthy with the new $path within ${{timeout}}s; rolled back to '
        f'$backup, {process} is $state. {process} log:" >&2'),
        'echo "$log" >&2',
        "exit 1",
    ])


@operation()
def static_pod_manifest(path: str, current: str, new: str, process: str, argv_old: list[str], argv_new: list[str],
                        health: str, timeout: int, backup_dir: str, log_glob: str):
    """
    Replace a static pod manifest and wait until the kubelet runs the component with exactly
    the new command line and its health check passes three times in a row; else restore the
    previous manifest, wait for the component again and fail with the component's log tail.

    + path: the manifest
    + current: its text as the deploy read it (the swap refuses if the file changed since)
    + new: the text wanted
    + process: the component's process name (argv[0] of the container command)
    + argv_old, argv_new: the container's command line before and after (container command + args)
    + health: a shell command (quoted words) that succeeds when the component is healthy
    + timeout: seconds to wait, for the new manifest and again for the previous one
    + backup_dir: where the previous manifest is kept (never the manifest directory)
    + log_glob: the component's container log files (a glob of safe characters)
    """
    if current == new:
        host.noop(f"{path} has the wanted flags")
        return
    show_diff(path, current, new)
    yield StringCommand("sh -c", QuoteString(static_pod_script(path, current, new, process, argv_old, argv_new, health,
                                                               timeout, backup_dir, log_glob)))


def kubelet_script(files: list[tuple[str, str, str]], service: str, health: str, timeout: int, backup_dir: str,
                   log_command: str) -> str:
    """Swap the kubelet's config and flag files, restart it, wait, roll back (module docstring)."""
    lines = [f"backup_dir={_q(backup_dir)} timeout={int(timeout)}", _COMMON,
             f"healthy() {{ {health} >/dev/null 2>&1; }}",
             ("current() { for d in /proc/[0-9]*; do read -r c 2>/dev/null < \"$d/comm\" && [ \"$c\" = kubelet ] "
             "&& [ \"${d#/proc/}\" != \"$old\" ] && { echo \"${d#/proc/}\"; return 0; }; done; return 1; }"),
             ("old=$(for d in /proc/[0-9]*; do read -r c 2>/dev/null < \"$d/comm\" && [ \"$c\" = kubelet ] "
             "&& echo \"${d#/proc/}\"; done | head -n 1)")]
    for path, current, _new in files:
        lines.append(f"unchanged {_q(path)} {_q(sha256(current))} || {{ echo 'hardline: '{_q(path)}' changed since the "
                     "deploy read it; nothing replaced' >&2; exit 1; }")
    for i, (path, _current, _new) in enumerate(files):
        lines.append(f"b{i}=$(keep {_q(path)}) || exit 1")
    for i, (path, _current, new) in enumerate(files):
        lines.append(f"put {_q(path)} {_q(base64.b64encode(new.encode()).decode())} || {{ "
                     + "; ".join(f'restore "$b{j}" {_q(p)}' for j, (p, _c, _n) in enumerate(files[:i]))
                     + ("; " if i else "") + f"echo 'hardline: could not write '{_q(path)} >&2; exit 1; }}")
    restart = f"systemctl restart {_q(service)}"
    lines += [
        (f'if {restart} && stable; then echo "hardline: {service} restarted with its new files and is healthy '
        f'(previous kept in $backup_dir, suffix $stamp)"; exit 0; fi'),
        f"log=$({log_command} 2>/dev/null)",
        *[f'restore "$b{i}" {_q(path)}' for i, (path, _c, _n) in enumerate(files)],
        "old=none",
        f'if {restart} && stable; then state="healthy again with its previous files"; else state="STILL NOT HEALTHY"; fi',
        (f'echo "hardline: {service} did not come back healthy within ${{timeout}}s; previous files restored '
        f'(suffix $stamp in $backup_dir), {service} is $state. {service} log:" >&2'),
        'echo "$log" >&2',
        "exit 1",
    ]
    return "\n".join(lines)


@operation()
def kubelet_files(files: list[tuple[str, str, str]], service: str, health: str, timeout: int, backup_dir: str,
                  log_command: str):
    """
    Replace the kubelet's config file and flag files together, restart the kubelet and wait
    until a new kubelet process answers its health URL three times in a row; else restore
    every file, restart it again and fail with the kubelet's log tail.

    + files: (path, text as read, text wanted) of each file to change
    + service: the kubelet's service
    + health: a shell command (quoted words) that succeeds when the kubelet is healthy
    + timeout: seconds to wait, for the new files and again for the previous ones
    + backup_dir: where the previous files are kept
    + log_command: a shell command printing the kubelet's log tail
    """
    changed = [(p, c, n) for p, c, n in files if c != n]
    if not changed:
        host.noop("the kubelet's files have the wanted settings")
        return
    for path, current, new in changed:
        show_diff(path, current, new)
    yield StringCommand("sh -c", QuoteString(kubelet_script(changed, service, health, timeout, backup_dir, log_command)))


@operation()
def kernel_settings(path: str, current: str | None, new: str, live: dict[str, str | None], wanted: dict[str, str]):
    """
    Kernel settings the kubelet insists on (protectKernelDefaults): set now with ``sysctl -w``
    and persisted in ``path``; the operation fails (before the kubelet is changed) when the
    kernel refuses one.

    + path: the sysctl.d file
    + current: its text as read (None: absent)
    + new: the text wanted
    + live: the values in effect now (None: the kernel has no such setting)
    + wanted: the values wanted
    """
    stale = {k: v for k, v in wanted.items() if live.get(k) != v}
    if current == new and not stale:
        host.noop(f"{', '.join(sorted(wanted))} are set and persisted")
        return
    if current != new:
        show_diff(path, current or "", new)
    parts = ["set -e;"]
    if current != new:
        parts += [f"mkdir -p {_q(path.rsplit('/', 1)[0])};",
                  f"printf '%s' {_q(base64.b64encode(new.encode()).decode())} | base64 -d > {_q(path)};",
                  f"chmod 644 {_q(path)};"]
    parts += [f"sysctl -w {_q(f'{k}={v}')} >/dev/null;" for k, v in sorted(stale.items())]
    yield StringCommand(" ".join(parts), "true")
