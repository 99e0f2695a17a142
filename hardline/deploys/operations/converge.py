"""Operations that decide from the facts gathered for the whole deploy (hardline/deploys/gather.py)
and hand the change itself to pyinfra's built-in operation (files.put, files.line, server.sysctl,
server.user, selinux.boolean, files.directory) through its ``_inner`` generator.

When the gathered facts show the host already compliant, the operation yields nothing and
sends nothing: no fact of its own, at change detection or at execution. Only an operation with
something to change lets the built-in operation read its own facts and act, so a change is
still made exactly the way pyinfra makes it. Every value reaches the shell through pyinfra's
QuoteString (or shlex.quote), never by string formatting.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
import shlex
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.command import FileUploadCommand, QuoteString, StringCommand
from pyinfra.api.util import try_int
from pyinfra.facts.files import File, FileContents, Sha1File
from pyinfra.facts.server import Sysctl, TmpDir
from pyinfra.operations import files, selinux
from pyinfra.operations.util import files as file_utils
from pyinfra.operations.util.files import adjust_regex, ensure_mode_int

from hardline.deploys.facts import LoadedAuditRules, PasswdEntry, PathStat
from hardline.deploys.gather import Need, host_facts, need
from hardline.deploys.platform_facts import AuditEnabled, LoadedModules, SelinuxBooleans


def _bytes(content: str | bytes | Path) -> bytes:
    if isinstance(content, Path):
        return content.read_bytes()
    return content.encode() if isinstance(content, str) else content


def file_needs(*paths: str) -> list[Need]:
    """What :func:`managed_file` reads about each path, and where uploads are staged."""
    return [need(TmpDir), *(n for p in paths for n in (need(File, path=p), need(Sha1File, path=p)))]


@operation()
def managed_file(dest: str, content: str | bytes | Path, user: str = "root", group: str = "root", mode: str = "644",
                 create_remote_dir: bool = False):
    """
    A file with this content, owner and mode.

    + dest: path on the host
    + content: the text or bytes, or a local file (Path) to upload
    + user, group, mode: owner and permission bits of the file
    + create_remote_dir: create the file's directory when the file is new

    Decided from the gathered ``File`` and ``Sha1File`` facts, as pyinfra's ``files.put`` decides
    (same sha1, owner and mode: nothing is sent). A change is pyinfra's own upload command and
    its chown/chmod, in one command: ``files.put`` would read File, Directory and Sha1File again
    first, three more round trips per file on a first deploy.
    """
    data = _bytes(content)
    facts = host_facts()
    current, sha1 = facts.get(File, path=dest), facts.get(Sha1File, path=dest)
    same = bool(current) and sha1 == hashlib.sha1(data).hexdigest()
    owned = bool(current) and current["user"] == user and current["group"] == group
    moded = bool(current) and current["mode"] == ensure_mode_int(mode)
    if same and owned and moded:
        host.noop(f"{dest} is up to date")
        return
    if not current and create_remote_dir:
        yield StringCommand("mkdir -p", QuoteString(posixpath.dirname(dest)))
    if not same:
        src = str(content) if isinstance(content, Path) else io.BytesIO(data)
        yield FileUploadCommand(src, dest, remote_temp_filename=host.get_temp_filename(
            dest, temp_directory=facts.get(TmpDir) or host.state.config.DEFAULT_TEMP_DIR))
    fixes = [cmd for cmd, needed in ((file_utils.chown(dest, user, group), not same or not owned),
                                     (file_utils.chmod(dest, mode), not same or not moded)) if needed]
    if fixes:
        yield StringCommand(*fixes, _separator=" && ") if len(fixes) > 1 else fixes[0]


@operation()
def directory(path: str, user: str = "root", group: str = "root", mode: str = "755"):
    """
    A directory with this owner and mode (pyinfra's ``files.directory`` makes the change).

    + path: the directory
    + user, group, mode: its owner and permission bits (compared with the gathered PathStat)
    """
    stat = host_facts().get(PathStat, path=path)
    if stat and stat["type"] == "directory" and stat["owner"] == user and stat["group"] == group \
            and stat["mode"] == int(mode, 8):
        host.noop(f"{path} is a directory {user}:{group} {mode}")
        return
    yield from files.directory._inner(path=path, user=user, group=group, mode=mode)


@operation()
def line_in_file(path: str, line: str, replace: str):
    """
    Every line matching the regular expression ``line`` reads ``replace`` (appended when none
    matches): pyinfra's ``files.line`` with extended regular expressions makes the change.

    + path: the file
    + line: extended regular expression of the line to own (anchored like files.line does)
    + replace: the whole line wanted
    """
    lines = host_facts().get(FileContents, path=path)
    pattern = re.compile(adjust_regex(line, False))
    matching = [text for text in lines or [] if pattern.search(text)]
    if (matching and all(text == replace for text in matching)) or (not matching and replace in (lines or [])):
        host.noop(f"{path} has {replace!r}")
        return
    yield from files.line._inner(path=path, line=line, replace=replace, extended_regex=True)


def sysctl_wanted(value: str | int) -> Any:
    """A sysctl value as pyinfra's Sysctl fact reports it (ints, lists of ints for several)."""
    parts = str(value).split()
    return [try_int(v) for v in parts] if len(parts) > 1 else try_int(str(value))


@operation()
def sysctl_value(key: str, value: str | int, keys: list[str]):
    """
    A kernel parameter at this value now: compared as pyinfra's ``server.sysctl`` compares, and
    changed with the command it sends (which would first read the value again, one more round
    trip per changed key).

    + key: sysctl name
    + value: the value wanted
    + keys: the keys gathered together with this one (one ``Sysctl`` fact for the whole profile)
    """
    current = host_facts().get(Sysctl, keys=keys)
    if current.get(key) == sysctl_wanted(value):
        host.noop(f"{key} is {value}")
        return
    yield StringCommand("sysctl", StringCommand(QuoteString(key), "=", QuoteString(str(value)), _separator=""))


@operation()
def system_user(user: str, shell: str = "/usr/sbin/nologin", home: str = "/nonexistent"):
    """
    A system user without a home directory: useradd when absent, usermod when its home or shell
    differ. (pyinfra's ``server.user`` would first read its Users fact, a dozen processes per
    user of the host, 38 s on the lab VM, and create the home directory, here /nonexistent.)

    + user: name
    + shell, home: login shell and home field
    """
    existing = host_facts().get(PasswdEntry, user=user)
    if existing and existing["shell"] == shell and existing["home"] == home:
        host.noop(f"user {user} exists")
        return
    if existing:
        yield StringCommand("usermod --home", QuoteString(home), "--shell", QuoteString(shell), QuoteString(user))
    else:
        yield StringCommand("useradd --system --no-create-home --home-dir", QuoteString(home), "--shell",
                            QuoteString(shell), QuoteString(user))


@operation()
def selinux_boolean(boolean: str, value: str):
    """
    An SELinux boolean set persistently (pyinfra's ``selinux.boolean`` makes the change).

    + boolean: its name
    + value: on or off (compared with the gathered ``getsebool -a``)
    """
    if host_facts().get(SelinuxBooleans).get(boolean) == value:
        host.noop(f"{boolean} is {value}")
        return
    yield from selinux.boolean._inner(bool_name=boolean, value=selinux.Boolean(value), persistent=True)


@operation()
def module_unloaded(module: str):
    """
    A kernel module not loaded. A module in use (a mounted udf disc...) stays loaded and says
    so on stderr instead of failing the deploy (pyinfra's ``server.modprobe`` would fail it);
    the check keeps failing until it is unloaded.

    + module: module name (- and _ are the same, as the kernel treats them)
    """
    loaded = host_facts().get(LoadedModules)
    if loaded is None or module.replace("-", "_") not in {m.replace("-", "_") for m in loaded}:
        host.noop(f"{module} is not loaded")
        return
    yield StringCommand("modprobe -r", QuoteString(module), "|| echo",
                        QuoteString(f"hardline: {module} is in use, not unloaded"), ">&2")


def rule_key(rule: str) -> tuple[tuple[str, str], ...]:
    """An audit rule as a comparable value: auditctl -l prints syscall lists in its own order, a
    key as -F key=..., permissions in its own order, and directories with a trailing slash."""
    words = shlex.split(rule)
    out, i = [], 0
    while i < len(words):
        word, value = words[i], (words[i + 1] if i + 1 < len(words) else "")
        if word == "-S":
            out += [("-S", s) for s in value.split(",")]
        elif word == "-F" and value.startswith("key="):
            out.append(("-k", value[4:]))
        elif word == "-p":
            out.append(("-p", "".join(sorted(value))))
        elif word.startswith("-"):
            out.append((word, value.rstrip("/") if word == "-w" else value))
        else:
            i -= 1
        i += 2
    return tuple(sorted(out))


def _delete_rule(rule: str) -> list[str]:
    """auditctl arguments that delete a loaded rule (-w → -W, -a → -d)."""
    words = shlex.split(rule)
    return [{"-w": "-W", "-a": "-d", "-A": "-d"}.get(words[0], words[0])] + words[1:]


@operation()
def audit_rules_loaded(rules: list[str], previous: list[str] | None = None):
    """
    These audit rules loaded in the kernel now, one ``auditctl`` per missing rule in one
    command; rules of ``previous`` (what hardline's rules file held before) that are no longer
    wanted are deleted. Other rules in the kernel are never touched (no ``-D``, no reload of
    every rules file), and rules files are read at boot by augenrules as usual.

    + rules: the rules wanted (as written in the rules file)
    + previous: the rules hardline managed before this run
    """
    facts = host_facts()
    # auditctl -l failed (no auditd, no permission): every rule is loaded, and auditctl's own
    # error fails the operation, so the reason is in the deploy's output
    loaded = facts.get(LoadedAuditRules) or []
    have = {rule_key(r) for r in loaded}
    want = {rule_key(r) for r in rules}
    missing = [r for r in rules if rule_key(r) not in have]
    stale = [r for r in previous or [] if r.startswith("-") and rule_key(r) not in want and rule_key(r) in have]
    if not missing and not stale:
        host.noop(f"{len(rules)} audit rules loaded")
        return
    if facts.get(AuditEnabled) == "2":
        host.noop("audit rules are immutable (-e 2) until reboot: the new rules load at the next boot")
        return
    parts: list[Any] = ["rc=0;"]
    for words in [_delete_rule(r) for r in stale]:
        parts += ["auditctl", *(QuoteString(w) for w in words), "|| rc=1;"]
    for words in [shlex.split(r) for r in missing]:
        load = ["auditctl", *(QuoteString(w) for w in words), "|| rc=1;"]
        if words[0] == "-w":  # auditctl refuses a watch on a path that is gone since the facts were read
            path = QuoteString(words[1])
            load = ["if [ -e", path, "]; then", *load, "else echo", QuoteString(f"hardline: {words[1]} does not exist, "
                    "watch not loaded"), ">&2; fi;"]
        parts += load
    yield StringCommand(*parts, 'test "$rc" = 0')
