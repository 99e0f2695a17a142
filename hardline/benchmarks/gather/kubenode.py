"""Facts about a Kubernetes node, round 2: what round 1's processes name.

* ``k8s_configs``: the kubelet's ``--config`` file and ``--config-dir`` drop-ins, kube-proxy's
  ``--config`` and etcd's ``--config-file`` (``ETCD_CONFIG_FILE``, or the layout's), each read
  as the process sees it (``/proc/PID/root``), parsed as YAML/JSON.
* ``k8s_encryption``: the API server's ``--encryption-provider-config``, read through
  ``/proc/PID/root`` with every ``secret:`` value replaced on the host: keys never leave it.

The stats of the layout's files are hardline.benchmarks.gather.kubefiles (same round). This
module also answers, for checks and for that one, where a component takes a setting from
(``flag_value``: etcd's config file, the command line, etcd's environment).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import yaml

from hardline.benchmarks.gather.core import Fact, FactError, HostFacts, section
from hardline.benchmarks.gather.kubernetes import Proc

ETCD_TLS = {  # etcd --config-file keys of the TLS flags (etcd's configYAML: nested security blocks)
    "cert-file": "client-transport-security.cert-file", "key-file": "client-transport-security.key-file",
    "client-cert-auth": "client-transport-security.client-cert-auth",
    "trusted-ca-file": "client-transport-security.trusted-ca-file",
    "auto-tls": "client-transport-security.auto-tls",
    "peer-cert-file": "peer-transport-security.cert-file", "peer-key-file": "peer-transport-security.key-file",
    "peer-client-cert-auth": "peer-transport-security.client-cert-auth",
    "peer-trusted-ca-file": "peer-transport-security.trusted-ca-file",
    "peer-auto-tls": "peer-transport-security.auto-tls",
}

# cat each file (f), each *.conf of a directory in lexical order (d), or a file with its secret
# values replaced on the host (r); "### OK|MISSING|ERR tag[ name]" before each
CAT = r"""
show() { if c=$(cat "$1" 2>&1); then echo "### OK $2"; printf '%s\n' "$c"; else echo "### ERR $2 $c"; fi; }
while [ $# -ge 3 ]; do
  t=$1; p=$2; k=$3; shift 3
  if [ ! -e "$p" ]; then echo "### MISSING $t"
  elif [ "$k" = d ]; then
    for f in "$p"/*.conf; do [ -e "$f" ] && show "$f" "$t ${f##*/}"; done
  elif [ "$k" = r ]; then
    if c=$(sed -E 's/("?secret"?[[:space:]]*:[[:space:]]*).*/\1<redacted>/' "$p" 2>&1); then
      echo "### OK $t"; printf '%s\n' "$c"
    else echo "### ERR $t $c"; fi
  else show "$p" "$t"; fi
done
"""
# ------------------------------------------------------------------------------ config files


def config_files(facts: HostFacts) -> list[tuple[str, str, str, str]]:
    """(tag, host path, kind, path as the process names it) of every config file round 2 reads."""
    layout = facts.need("k8s_layout")
    procs: dict[str, Proc] = facts.need("k8s_procs")
    files = []
    for name in ("kubelet", "proxy"):
        proc, spec = procs.get(name), layout["components"].get(name) or {}
        if proc is None:
            continue
        config = proc.flags.get(spec.get("config_flag") or "config")
        if config:
            files.append((f"{name}.config", proc.path(config), "f", config))
        drop_ins = proc.flags.get(spec["config_dir_flag"]) if spec.get("config_dir_flag") else None
        if drop_ins:
            files.append((f"{name}.dropin", proc.path(drop_ins), "d", drop_ins))
    etcd = procs.get("etcd")
    if etcd is not None:
        path = etcd_config_path(etcd, layout["components"]["etcd"])
        if path:
            files.append(("etcd.config", etcd.path(path), "f", path))
    return files


def etcd_config_path(proc: Proc, spec: dict[str, Any]) -> str:
    """etcd's config file: the layout's (k3s), else --config-file, else ETCD_CONFIG_FILE."""
    flags_from = spec.get("flags_from")
    if isinstance(flags_from, dict) and "config_file" in flags_from:
        return str(flags_from["config_file"])
    flag = spec.get("config_file_flag") or "config-file"
    return proc.flags.get(flag) or _env(proc, spec, flag) or ""


def _env(proc: Proc, spec: dict[str, Any], flag: str) -> str | None:
    prefix = spec.get("env_prefix")
    if not prefix or not proc.env:
        return None
    return proc.env.get(prefix + flag.upper().replace("-", "_"))


def _configs_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    if "k8s_procs" in facts.errors:
        return []
    args = [a for tag, path, kind, _ in config_files(facts) for a in (tag, path, kind)]
    if not args:
        return []
    return [f"run k8s_configs sh -c {shlex.quote(CAT)} _ " + " ".join(shlex.quote(a) for a in args)]


def _parse_blocks(out: str) -> dict[str, Any]:
    """tag -> {"text", "name"} blocks, "MISSING", or ("ERR", message); drop-ins: tag -> [blocks]."""
    found: dict[str, Any] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("### "):
            status, _, rest = line[4:].partition(" ")
            tag, _, name = rest.partition(" ")
            current = None
            if status == "MISSING":
                found[tag] = "MISSING"
            elif status == "ERR":
                found[tag] = ("ERR", name)
            else:
                block: dict[str, Any] = {"name": name, "lines": []}
                if tag.endswith(".dropin"):
                    found.setdefault(tag, []).append(block)
                else:
                    found[tag] = block
                current = block["lines"]
        elif current is not None:
            current.append(line)
    return found


def _load(text: str, where: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as err:
        raise FactError(f"{where} is not valid YAML/JSON: {str(err).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise FactError(f"{where} is not a mapping")
    return doc


def _parse_configs(facts: HostFacts, data: dict[str, Any]) -> None:
    if "k8s_procs" in facts.errors:
        facts.errors["k8s_configs"] = facts.errors["k8s_procs"]
        return
    wanted = config_files(facts)
    configs: dict[str, Any] = {}
    if wanted:
        out = section(facts, "k8s_configs")
        if out is None:
            return
        blocks = _parse_blocks(out)
        for tag, _path, kind, named in wanted:
            block = blocks.get(tag)
            if block is None and kind == "d":
                block = []
            configs[tag] = _config_entry(block, named, kind)
    facts.values["k8s_configs"] = configs


def _config_entry(block: Any, named: str, kind: str) -> dict[str, Any]:
    """{"path", "doc"} of a file, {"path", "docs": [(name, doc)]} of a drop-in directory, or
    {"path", "error"}: a config file the process names that cannot be read fails its checks."""
    if block is None:
        return {"path": named, "error": f"{named}: no output from the host"}
    if block == "MISSING":
        return {"path": named, "missing": True, "error": f"{named} does not exist (as the process sees it)"}
    if isinstance(block, tuple):
        return {"path": named, "error": f"cannot read {named}: {block[1]}"}
    try:
        if kind == "d":
            return {"path": named, "docs": [(b["name"], _load("\n".join(b["lines"]), f"{named}/{b['name']}")) for b in block]}
        return {"path": named, "doc": _load("\n".join(block["lines"]), named)}
    except FactError as err:
        return {"path": named, "error": str(err)}


def config(facts: HostFacts, tag: str) -> dict[str, Any] | None:
    """A parsed config file (tag ``kubelet.config``, ``kubelet.dropin``, ``proxy.config``,
    ``etcd.config``), None when the process names none; FactError when it cannot be read."""
    entry = facts.need("k8s_configs").get(tag)
    if entry is not None and "error" in entry:
        raise FactError(entry["error"])
    return entry


def lookup(doc: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """(present, value) of a dotted key in a parsed config document."""
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


# ------------------------------------------------------------------------- effective values


def etcd_value(facts: HostFacts, proc: Proc, flag: str) -> tuple[bool, Any, str]:
    """(given, value, source) of an etcd setting in etcd's own precedence: its config file alone
    when it has one, else the command line, else ETCD_<FLAG> in its environment."""
    spec = facts.need("k8s_layout")["components"]["etcd"]
    path = etcd_config_path(proc, spec)
    if path:
        entry = config(facts, "etcd.config")
        key = ETCD_TLS.get(flag, flag)
        present, value = lookup(entry["doc"], key) if entry else (False, None)
        return present, value, f"{key}: {_show(value)} (etcd config file {path}, pid {proc.pid})" if present else \
            f"{key} not in etcd config file {path} (pid {proc.pid}; etcd then ignores its flags and variables)"
    if flag in proc.flags:
        return True, proc.flags[flag], f"flag --{flag}={proc.flags[flag]} ({proc.source})"
    if proc.env is None:
        raise FactError(f"cannot read /proc/{proc.pid}/environ of etcd: {proc.env_error or 'permission denied'}")
    variable = (spec.get("env_prefix") or "ETCD_") + flag.upper().replace("-", "_")
    if variable in proc.env:
        return True, proc.env[variable], f"{variable}={proc.env[variable]} (environ of pid {proc.pid})"
    return False, None, f"--{flag} given nowhere (flags, {variable}, config file)"


def flag_value(facts: HostFacts, proc: Proc, flag: str) -> tuple[bool, Any, str]:
    """(given, value, source) of a component's flag as the component takes it."""
    if proc.component == "etcd":
        return etcd_value(facts, proc, flag)
    if flag in proc.flags:
        return True, proc.flags[flag], f"flag --{flag}={proc.flags[flag]} ({proc.source})"
    return False, None, f"--{flag} not given ({proc.source})"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _encryption_lines(data: dict[str, Any], facts: HostFacts) -> list[str]:
    if "k8s_procs" in facts.errors:
        return []
    proc = facts.need("k8s_procs").get("apiserver")
    path = proc.flags.get("encryption-provider-config") if proc else None
    if not path:
        return []
    return [f"run k8s_encryption sh -c {shlex.quote(CAT)} _ apiserver.encryption {shlex.quote(proc.path(path))} r"]


def _parse_encryption(facts: HostFacts, data: dict[str, Any]) -> None:
    """{"path", "doc"} of the API server's EncryptionConfiguration (secrets redacted), None when
    the flag is not given."""
    if "k8s_procs" in facts.errors:
        facts.errors["k8s_encryption"] = facts.errors["k8s_procs"]
        return
    proc = facts.need("k8s_procs").get("apiserver")
    path = proc.flags.get("encryption-provider-config") if proc else None
    if not path:
        facts.values["k8s_encryption"] = None
        return
    out = section(facts, "k8s_encryption")
    if out is not None:
        facts.values["k8s_encryption"] = _config_entry(_parse_blocks(out).get("apiserver.encryption"), path, "f")


FACTS = [
    Fact("k8s_encryption", _encryption_lines, _parse_encryption, round=2, requires=("k8s_procs",)),
    Fact("k8s_configs", _configs_lines, _parse_configs, round=2, requires=("k8s_procs",)),
]
