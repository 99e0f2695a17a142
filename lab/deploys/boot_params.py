"""pyinfra deploy file with only hardline's boot-parameter deploy (HL-1.3: GRUB configuration,
update-grub, the reboot when kernel_reboot): what tests/test_lab_vagrant_grub.py runs, so that
the GRUB path is proven without paying for the whole hardening deploy each time (the QEMU lab
and the SELinux machine run that one)."""

from hardline.deploys.kernel import boot_params

boot_params()
