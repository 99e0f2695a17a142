"""Docker hosts: daemon and kernel settings (overrides of hardline/defaults.yml)."""

docker_log_driver = "journald"
docker_log_opts = {"tag": "{{.Name}}"}
docker_default_ulimits = {"nofile": {"soft": 65536, "hard": 65536}, "nproc": {"soft": 4096, "hard": 8192}}
docker_trusted_users = []
# Limits of dockerd and containerd themselves (HL-4.2); containers get their own.
cgroup_engine_limits = {"CPUQuota": "150%", "MemoryMax": "1G", "TasksMax": "8192"}
