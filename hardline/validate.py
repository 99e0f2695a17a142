"""Named value types of inventory variables (hardline/defaults.yml ``type:``), and their checks.

An inventory is edited by many people, and its values end up in shell commands, systemd unit
files, audit rules files and the GRUB defaults file (which update-grub sources as shell). Every
such value has a type that admits only what the thing it names can be: a user name cannot hold
a ``;``, a path cannot hold a newline, a boot parameter cannot hold a ``$(...)``. The deploys
quote every value as well (shlex.quote / pyinfra's QuoteString); validation is what makes a bad
value a clear message naming file, host and key instead of a failed or, worse, a run command.

Types: a scalar name from :data:`SCALARS` (``user``, ``path``, ``unit``, ...), the same with a
trailing ``?`` when the empty string is allowed (``path?``), ``list[<scalar>]``, and the
mappings ``systemd_settings`` and ``selinux_booleans``. hardline/inventory.py asks
:func:`type_error` for every type it does not handle itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scalar:
    pattern: re.Pattern[str]
    means: str  # what a valid value looks like, for the message


def _scalar(pattern: str, means: str) -> Scalar:
    return Scalar(re.compile(pattern), means)


_NAME = r"[A-Za-z_][A-Za-z0-9_.-]{0,31}"
SCALARS: dict[str, Scalar] = {
    "user": _scalar(rf"^{_NAME}$", "a user name (letters, digits, _ . -; not starting with - or a digit)"),
    "group": _scalar(rf"^{_NAME}$", "a group name (letters, digits, _ . -; not starting with - or a digit)"),
    "path": _scalar(r"^/[A-Za-z0-9._+@:,=/-]*$", "an absolute path of letters, digits and _ . + @ : , = / -"),
    "local_path": _scalar(r"^[^\x00-\x1f\x7f]+$", "a path on the machine running the deploy (one line)"),
    "service": _scalar(r"^[A-Za-z0-9_:@.][A-Za-z0-9_:@.-]*$", "a systemd service name without suffix (e.g. docker)"),
    "unit": _scalar(r"^[A-Za-z0-9_:@.][A-Za-z0-9_:@.\\-]*$",
                    "a systemd unit name (e.g. cups.service; without a suffix systemctl means .service)"),
    "module": _scalar(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$", "a kernel module name (letters, digits, _ -)"),
    "package": _scalar(r"^[A-Za-z0-9][A-Za-z0-9+._-]*$", "a package name (letters, digits, + . _ -)"),
    "audit_key": _scalar(r"^[A-Za-z0-9_.:-]{1,31}$", "an audit key (up to 31 letters, digits, _ . : -)"),
    "audit_rule": _scalar(r"^-[A-Za-z]( +[A-Za-z0-9_./,=<>!:+-]+)*$",
                          "one auditctl rule (e.g. -w /etc/passwd -p wa -k identity): no quotes, $, ;, | or newlines"),
    "boot_param": _scalar(r"^[A-Za-z0-9_.,:/=+-]+$", "one kernel parameter (e.g. audit=1): letters, digits, _ . , : / = + -"),
    "docker_host": _scalar(r"^(tcp|unix|fd)://[A-Za-z0-9._:/\[\]-]*$", "a dockerd listener (e.g. tcp://10.0.0.5:2376)"),
    "capability": _scalar(r"^[A-Za-z_]+$", "a capability name (e.g. NET_BIND_SERVICE)"),
    "name": _scalar(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$", "a name of letters, digits and _ . : / -"),
    "profile": _scalar(r"^[a-z0-9][a-z0-9_.-]*$", "an AppArmor profile name (lowercase letters, digits, _ . -)"),
    "cgroup": _scalar(r"^[A-Za-z0-9_./:-]+$", "a cgroup path (letters, digits, _ . / : -)"),
    "apparmor_rule": _scalar(r"^[^\x00-\x1f\x7f]+$", "one AppArmor rule on one line"),
    "subject": _scalar(r"^[A-Za-z]+:[A-Za-z0-9_.:/*-]+$", "a Kubernetes subject Kind:name (e.g. Group:system:masters)"),
    "duration": _scalar(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$", "a Go duration (e.g. 4h0m0s, 90s)"),
    "sysctl_value": _scalar(r"^[A-Za-z0-9 ._:/-]*$", "a sysctl value (letters, digits, spaces, _ . : / -)"),
}
SYSTEMD_KEY = re.compile(r"^[A-Z][A-Za-z0-9]*$")
# a systemd setting's value: plain words, sizes, percentages, durations, KEY=value; no quotes,
# $, ;, backticks, |, & or #, and no Exec*= keys (their values are command lines systemd runs)
SYSTEMD_VALUE = re.compile(r"^[A-Za-z0-9 ._:/%=,+@-]*$")
SELINUX_BOOLEAN = re.compile(r"^[a-z0-9_]+$")
ONE_LINE = re.compile(r"^[^\x00-\x1f\x7f]*$")


def _split(kind: str) -> tuple[str, str, bool]:
    """("list" or "", scalar name, empty allowed) of a type name such as list[path] or path?."""
    container = ""
    if kind.startswith("list[") and kind.endswith("]"):
        container, kind = "list", kind[5:-1]
    return container, kind.rstrip("?"), kind.endswith("?")


def knows(kind: str) -> bool:
    """Whether ``kind`` is one of the types defined here."""
    if kind in ("systemd_settings", "selinux_booleans"):
        return True
    _, scalar, _ = _split(kind)
    return scalar in SCALARS


def base_type(kind: str) -> str:
    """The plain type a named type refines: str for path/user/..., list[str] for list[path]..."""
    if kind in ("systemd_settings", "selinux_booleans"):
        return "dict[str,str]"
    if not knows(kind):
        return kind
    container, _, _ = _split(kind)
    return "list[str]" if container == "list" else "str"


def scalar_error(scalar: str, value: Any, empty_ok: bool = False) -> str | None:
    """Why ``value`` is not a valid ``scalar`` (None if it is)."""
    if not isinstance(value, str):
        return "must be a string"
    if value == "" and empty_ok:
        return None
    spec = SCALARS[scalar]
    return None if spec.pattern.match(value) else f"{value!r} is not {spec.means}"


def type_error(kind: str, value: Any) -> str | None:
    """Why ``value`` is not of type ``kind`` (None if it is)."""
    if kind == "systemd_settings":
        if not isinstance(value, dict):
            return 'must be a mapping of systemd [Service] settings to values, e.g. {"LimitNOFILE": "1048576"}'
        for key, val in value.items():
            if not isinstance(key, str) or not SYSTEMD_KEY.match(key):
                return f"{key!r} is not a systemd setting name (e.g. LimitNOFILE)"
            if key.startswith("Exec"):
                return f"{key}: command lines are not settings hardline writes; use a drop-in of your own"
            if not isinstance(val, str) or not SYSTEMD_VALUE.match(val):
                return f"{key}: {val!r} is not a plain systemd value (letters, digits, spaces, . _ : / % = , + @ -)"
        return None
    if kind == "selinux_booleans":
        if not isinstance(value, dict):
            return 'must be a mapping of SELinux boolean to on/off, e.g. {"container_manage_cgroup": "off"}'
        for key, val in value.items():
            if not isinstance(key, str) or not SELINUX_BOOLEAN.match(key):
                return f"{key!r} is not an SELinux boolean name (lowercase letters, digits, _)"
            if not isinstance(val, str):  # on/off: checked with the other SELinux settings (inventory.py)
                return f"{key}: must be on or off"
        return None
    container, scalar, empty_ok = _split(kind)
    if container == "list":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return "must be a list of strings"
        for item in value:
            why = scalar_error(scalar, item, empty_ok)
            if why:
                return why
        return None
    return scalar_error(scalar, value, empty_ok)
