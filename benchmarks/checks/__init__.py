"""Verification side: one function per control kind, registered in CHECKS.

A check reads gathered facts (never the host directly, never deploys/) and the control's params
resolved against the host's inventory data, and returns a Verdict. A fact that could not be
gathered raises FactError, which the engine turns into ERROR.
"""

from benchmarks.checks import audit, daemon, files, kernel, users

CHECKS = {
    "daemon_option": daemon.check_daemon_option,
    "daemon_tls": daemon.check_daemon_tls,
    "file_owner": files.check_file_owner,
    "file_mode": files.check_file_mode,
    "separate_mount": files.check_separate_mount,
    "audit_watch": audit.check_audit_watch,
    "group_members": users.check_group_members,
    "sysctl": kernel.check_sysctl,
}
