"""hardline's test labs: test infrastructure, never imported by the product (hardline/).

- lab/qemu.py, lab/image.py: one Debian 12 VM under QEMU (-kernel boot, SSH on 127.0.0.1), booted
  once per test session and restored from a savevm snapshot between test modules.
- lab/boxes.py, lab/boxdisk.py: local Vagrant boxes (GRUB-booted Debian 12, AppArmor and SELinux
  variants) built from Debian's archive and cached under ~/.cache/hardline/boxes.
- lab/netns.py, lab/vagrant.py: the Vagrant lab (vagrant/Vagrantfile, vagrant-libvirt) with libvirtd,
  vagrant, pyinfra and hardline all inside the network namespace ``hlv``.
- lab/deploy.py: a pyinfra run whose changed operations are read from pyinfra's own state.
- lab/demo.py: the README's main job (`bash scripts/lab-run.sh` = `python3 -m lab demo`).
"""
