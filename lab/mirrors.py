"""Debian mirror discovery for image and box builds: never hard-coded, read from this machine's
apt sources unless $HARDLINE_DEBIAN_MIRROR / $HARDLINE_DEBIAN_SECURITY_MIRROR say otherwise."""

from __future__ import annotations

import contextlib
import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path

from lab.common import LabError

DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
_DEBIAN_SUITES = {
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldoldstable", "oldstable", "stable", "testing", "unstable",
}  # fmt: skip


def _is_debian_archive(suites: Sequence[str], components: Sequence[str], security: bool = False) -> bool:
    """True for a main Debian archive entry (or, with ``security``, a security one).

    Matching on Debian suite names skips Ubuntu archives and third-party
    repositories (docker.com uses Debian codenames but not the ``main`` component).
    """
    if "main" not in components:
        return False
    if security:
        return any(s.endswith("-security") and s.split("-")[0] in _DEBIAN_SUITES for s in suites)
    return any(s in _DEBIAN_SUITES for s in suites)  # "bookworm-security" etc. excluded


def _mirrors_from_deb822(text: str, security: bool = False) -> list[str]:
    uris: list[str] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
            continue
        if _is_debian_archive(fields.get("suites", "").split(), fields.get("components", "").split(), security):
            uris += fields.get("uris", "").split()
    return uris


def _mirrors_from_list(text: str, security: bool = False) -> list[str]:
    uris: list[str] = []
    for line in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()  # drop [options]
        if len(line) >= 4 and line[0] == "deb" and _is_debian_archive([line[2]], line[3:], security):
            uris.append(line[1])
    return uris


def _host_mirrors(security: bool) -> list[str]:
    """http(s) Debian archive URIs configured in this machine's apt sources."""
    candidates: list[str] = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with contextlib.suppress(OSError):
            candidates += _mirrors_from_deb822(Path(path).read_text(errors="replace"), security)
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        with contextlib.suppress(OSError):
            candidates += _mirrors_from_list(Path(path).read_text(errors="replace"), security)
    return [uri.rstrip("/") for uri in candidates if uri.startswith(("http://", "https://"))]


def debian_security_mirror() -> str | None:
    """Debian security archive URL (``$HARDLINE_DEBIAN_SECURITY_MIRROR`` or apt sources), if any."""
    env = os.environ.get("HARDLINE_DEBIAN_SECURITY_MIRROR")
    if env:
        return env.rstrip("/")
    found = _host_mirrors(security=True)
    return found[0] if found else None


def debian_mirror() -> str:
    """Debian mirror URL: ``$HARDLINE_DEBIAN_MIRROR`` or this machine's apt sources."""
    env = os.environ.get("HARDLINE_DEBIAN_MIRROR")
    if env:
        return env.rstrip("/")
    found = _host_mirrors(security=False)
    if found:
        return found[0]
    raise LabError(
        "no Debian mirror found in /etc/apt/sources.list(.d); set HARDLINE_DEBIAN_MIRROR to a Debian archive URL"
    )

