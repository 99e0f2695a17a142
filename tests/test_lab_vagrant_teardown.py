"""The Vagrant lab leaves nothing behind: after `down` (what the session does at its end) there is
no network namespace hlv, no libvirtd, virtlogd, dnsmasq of the lab network or QEMU guest of the
lab, and no loop device on a box build's file. Runs last among the Vagrant tests (file order)."""

from __future__ import annotations

import pytest

from lab import boxes, netns

pytestmark = [pytest.mark.lab, pytest.mark.vagrant]


def test_down_leaves_no_namespace_process_or_loop_device(vagrant_lab):
    from lab import vagrant

    if not netns.exists():  # run on its own: bring the lab's daemons up first, so that down has work
        netns.up()
    assert netns.leftovers([boxes.boxes_dir()]), "the lab is up: leftovers() must see it"
    assert vagrant.vagrant("status", "--machine-readable").returncode == 0
    vagrant_lab.down()
    assert netns.leftovers([boxes.boxes_dir()]) == []
