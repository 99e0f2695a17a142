"""Project operations, written like pyinfra's own: read facts, yield commands only on change."""

from __future__ import annotations

import difflib
import io
import json
from typing import Any

import click
import jinja2
from pyinfra import host
from pyinfra.api import StringCommand, operation
from pyinfra.api.command import QuoteString
from pyinfra.operations import files

from hardline.deploys.common import TEMPLATES
from hardline.deploys.facts import DaemonJson, GroupMembers
from hardline.deploys.gather import host_facts

DAEMON_JSON_TEMPLATE = TEMPLATES / "etc/docker/daemon.json.j2"


@operation()
def permissions(path: str, stat: dict[str, Any] | None, owner: str | None = None, group: str | None = None,
                max_mode: str | None = None):
    """
    Tighten ownership and permission bits of an existing path; never loosens, never creates.

    + path: file, directory or socket to fix
    + stat: its gathered owner, group and mode (PathStat, UnitFile or GlobStats); None: absent, left alone
    + owner: user that must own the path
    + group: group that must own the path
    + max_mode: octal string; bits outside it are removed (chmod to current & max_mode)
    + stat: its owner, group and mode as already gathered (None: absent); read here when not given

    **Example:**

    .. code:: python

        permissions(name="[3.16] docker.sock 660", path="/run/docker.sock", owner="root", group="docker",
                    max_mode="660", stat=host_facts().get(PathStat, path="/run/docker.sock"))
    """
    if stat is None:
        host.noop(f"{path} does not exist")
        return
    changed = False
    if (owner and stat["owner"] != owner) or (group and stat["group"] != group):
        yield StringCommand("chown", QuoteString(f"{owner or stat['owner']}:{group or stat['group']}"), QuoteString(path))
        changed = True
    if max_mode is not None:
        limit = int(str(max_mode), 8)
        if stat["mode"] & ~limit:
            yield StringCommand("chmod", f"{stat['mode'] & limit:o}", QuoteString(path))
            changed = True
    if not changed:
        host.noop(f"{path} is {stat['owner']}:{stat['group']} {stat['mode']:o}")


@operation()
def group_members_only(group: str, allowed: list[str]):
    """
    Nobody but the allowed users in a group: any other member is removed with gpasswd.

    + group: the group (absent: nothing to do)
    + allowed: users who may stay
    """
    members = host_facts().get(GroupMembers, group=group) or []
    extra = sorted(set(members) - set(allowed))
    if not extra:
        host.noop(f"group {group}: {', '.join(members) or 'no members'}")
        return
    for user in extra:
        yield StringCommand("gpasswd -d", QuoteString(user), QuoteString(group))


def render_daemon_json(settings: dict[str, Any]) -> str:
    """daemon.json text from templates/etc/docker/daemon.json.j2 (sorted keys, 2-space indent)."""
    template = jinja2.Template(DAEMON_JSON_TEMPLATE.read_text(), keep_trailing_newline=True)
    text = template.render(settings=settings)
    assert json.loads(text) == settings  # tojson must round-trip; never write what we did not mean
    return text


# One shell program: validate, back up, swap, restart, check, and roll back on any failure, so
# that a bad daemon.json never leaves dockerd down and the previous file is never lost.
_SWAP_AND_RESTART = r"""
set -u
new=$1; path=$2; service=$3; timeout=$4; sock=$5
if dockerd --help 2>&1 | grep -q -- '--validate'; then
  out=$(dockerd --validate --config-file "$new" 2>&1) || {
    echo "hardline: $new rejected by dockerd --validate: $out" >&2; rm -f "$new"; exit 1; }
fi
backup=""
if [ -e "$path" ]; then backup="$path.hardline-bak.$(date +%Y%m%d%H%M%S)"; cp -a "$path" "$backup"; fi
mv -f "$new" "$path"
healthy() {
  i=0
  while [ "$i" -lt "$timeout" ]; do
    systemctl is-active --quiet "$service" && docker -H "unix://$sock" info >/dev/null 2>&1 && return 0
    if systemctl is-failed --quiet "$service"; then return 1; fi
    sleep 1; i=$((i + 1))
  done
  return 1
}
systemctl reset-failed "$service" >/dev/null 2>&1
if systemctl restart "$service" && healthy; then
  echo "hardline: $service restarted with new $path${backup:+ (previous kept as $backup)}"
  exit 0
fi
log=$(journalctl -u "$service" -n 15 --no-pager 2>/dev/null | tail -n 15)
if [ -n "$backup" ]; then cp -a "$backup" "$path"; else rm -f "$path"; fi
systemctl reset-failed "$service" >/dev/null 2>&1
systemctl restart "$service" && healthy && state="running with the previous configuration" || state="STILL DOWN"
echo "hardline: $service did not come up with the new $path; rolled back, $service is $state. Daemon log:" >&2
echo "$log" >&2
exit 1
"""


@operation()
def daemon_json(path: str, settings: dict[str, Any], service: str = "docker", socket: str = "/var/run/docker.sock",
                restart_timeout: int = 90):
    """
    Write daemon.json when its JSON differs, validated, backed up, restarted with roll-back.

    + path: daemon.json path
    + settings: the complete desired JSON object
    + service: systemd service to restart after the change
    + socket: unix socket used to check that the daemon answers after the restart
    + restart_timeout: seconds to wait for the daemon before rolling back

    The comparison is on parsed JSON, so formatting and key order never cause a change.
    On a change the unified diff is printed (also with ``--dry``). The new file is checked with
    ``dockerd --validate`` where dockerd supports it (23.0+); on every version the daemon must
    answer ``docker info`` after the restart, or the previous file is restored and the daemon
    restarted with it, and the operation fails.

    **Example:**

    .. code:: python

        daemon_json(name="Docker daemon.json", path="/etc/docker/daemon.json",
                    settings={"icc": False, "live-restore": True})
    """
    current = host_facts().get(DaemonJson, path=path)
    if current == settings:
        host.noop(f"{path} already has the desired settings")
        return
    old = current.get("__invalid__") if "__invalid__" in current else (render_daemon_json(current) if current else "")
    new = render_daemon_json(settings)
    diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"{host.name}:{path}", "desired"))
    click.echo(diff, err=True)
    staged = f"{path}.hardline-new"
    yield from files.put._inner(src=io.StringIO(new), dest=staged, user="root", group="root", mode="644")
    yield StringCommand("sh -c", QuoteString(_SWAP_AND_RESTART), "hardline", QuoteString(staged), QuoteString(path),
                        QuoteString(service), str(int(restart_timeout)), QuoteString(socket))
