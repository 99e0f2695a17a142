"""The QEMU lab VM (lab/qemu.py): fast unit tests, plus end-to-end tests on the VM (``-m lab``),
which the session boots once and restores from its "booted" snapshot for this module."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab import mirrors
from lab import qemu as lab
from lab.__main__ import cli

# --------------------------------------------------------------------------
# Unit tests (no VM)
# --------------------------------------------------------------------------

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: https://download.example/linux/debian
Suites: bookworm
Components: stable
"""


def test_mirror_from_deb822() -> None:
    assert mirrors._mirrors_from_deb822(DEB822) == ["http://mirror.example/debian/"]
    assert mirrors._mirrors_from_deb822(DEB822, security=True) == ["http://security.example/debian-security"]


def test_mirror_from_sources_list_skips_ubuntu_and_options() -> None:
    text = (
        "deb http://archive.example/ubuntu noble main restricted\n"
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib\n"
    )
    assert mirrors._mirrors_from_list(text) == ["http://mirror.example/debian"]


def test_mirror_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDLINE_DEBIAN_MIRROR", "http://override.example/debian/")
    assert mirrors.debian_mirror() == "http://override.example/debian"


def test_inventory_data_is_deterministic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HARDLINE_LAB_DIR", str(tmp_path))
    monkeypatch.setenv("HARDLINE_LAB_SSH_PORT", "2299")
    assert lab.inventory_data() == {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": 2299,
        "ssh_user": "root",
        "ssh_key": str(tmp_path / "base" / "id_ed25519"),
        "ssh_known_hosts_file": str(tmp_path / "run" / "known_hosts"),
    }


def test_cli_errors_are_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDLINE_LAB_DIR", str(tmp_path))
    monkeypatch.setenv("HARDLINE_LAB_SSH_PORT", "nope")
    assert cli(["status"]) == 2
    assert capsys.readouterr().err.startswith("lab: error: HARDLINE_LAB_SSH_PORT")
    monkeypatch.setenv("HARDLINE_LAB_SSH_PORT", "2299")
    assert cli(["ssh", "true"]) == 2
    assert "not running" in capsys.readouterr().err


# --------------------------------------------------------------------------
# End-to-end on the VM (restored to its booted state for this module)
# --------------------------------------------------------------------------


def sh(command: str) -> subprocess.CompletedProcess[str]:
    return lab.run_ssh(command, timeout=120)


@pytest.mark.lab
def test_ssh_root_with_key_and_strict_known_hosts(lab_vm: dict[str, Any], tmp_path: Path) -> None:
    data = lab.inventory_data()
    assert {k: lab_vm[k] for k in data} == data
    proc = subprocess.run(
        [
            "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={data['ssh_known_hosts_file']}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes", "-i", data["ssh_key"], "-p", str(data["ssh_port"]),
            f"{data['ssh_user']}@{data['ssh_hostname']}", "id -un; hostname",
        ],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["root", "hardline-lab"]
    # Strict checking is real: an empty known_hosts must be refused.
    empty = tmp_path / "known_hosts"
    empty.touch()
    proc = subprocess.run(
        [
            "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={empty}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-i", data["ssh_key"], "-p", str(data["ssh_port"]), f"root@{data['ssh_hostname']}", "true",
        ],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 255
    assert "Host key verification failed" in proc.stderr


@pytest.mark.lab
def test_apparmor_enabled_and_enforcing(lab_vm: dict[str, Any]) -> None:
    assert sh("cat /sys/module/apparmor/parameters/enabled").stdout.strip() == "Y"
    assert sh("aa-status --enabled").returncode == 0
    assert sh("aa-status --enforced").stdout.strip() not in ("", "0")


@pytest.mark.lab
def test_systemd_running(lab_vm: dict[str, Any]) -> None:
    # `is-system-running --wait` blocks until boot finished, then reports.
    state = sh("systemctl is-system-running --wait").stdout.strip()
    assert state in ("running", "degraded"), sh("systemctl --failed --no-legend").stdout


@pytest.mark.lab
def test_docker_active_and_answers(lab_vm: dict[str, Any]) -> None:
    assert sh("systemctl is-active docker").stdout.strip() == "active"
    info = sh("docker info --format '{{.ServerVersion}} {{.DockerRootDir}}'")
    assert info.returncode == 0, info.stderr
    assert info.stdout.split()[1] == "/var/lib/docker"


@pytest.mark.lab
def test_var_lib_docker_is_separate_mount(lab_vm: dict[str, Any]) -> None:
    proc = sh("findmnt -n -o SOURCE,FSTYPE /var/lib/docker")
    assert proc.returncode == 0, "/var/lib/docker is not a mount point"
    assert proc.stdout.split() == ["/dev/vdb", "ext4"]


@pytest.mark.lab
def test_auditd_active(lab_vm: dict[str, Any]) -> None:
    assert sh("systemctl is-active auditd").stdout.strip() == "active"
    assert "enabled 1" in sh("auditctl -s").stdout
