#!/usr/bin/env python3
"""Coverage of hardline's CIS Kubernetes catalogs against kube-bench's cfg/, per benchmark version.

kube-bench (github.com/aquasecurity/kube-bench) is the tool people compare a CIS Kubernetes run
with, so its cfg/<version>/ is the reference list of items. Its text is not ours to copy: the
reference is kept in docs/kube-bench/<version>.yml as ids, file, scored/type and the names of
the settings each check tests, nothing else. This script

    python3 scripts/kube_bench_coverage.py                   # compare every version, print differences
    python3 scripts/kube_bench_coverage.py --refresh KB_DIR  # rewrite docs/kube-bench/*.yml from a checkout

prints, per version, the ids only kube-bench has, the ids only hardline has, and the ids whose
automated/manual status differs (kube-bench `scored` against hardline `assessment`). Every such
id must be explained in docs/kube-bench-differences.md; tests/test_catalog_kubernetes.py
enforces that through compare() and undocumented().
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hardline.catalog import load_catalog  # noqa: E402

REFERENCE_DIR = ROOT / "docs" / "kube-bench"
DIFFERENCES_DOC = ROOT / "docs" / "kube-bench-differences.md"
# kube-bench benchmark directory -> hardline catalog version
VERSIONS = {"cis-1.20": "1.20", "cis-1.12": "1.12"}
FILES = ("master", "etcd", "controlplane", "node", "policies")


def _tested(check: dict) -> list[str]:
    """Names of the settings a kube-bench check tests (flags, JSONPath keys, env variables)."""
    names: list[str] = []
    for item in (check.get("tests") or {}).get("test_items") or []:
        for key in ("flag", "path", "env"):
            if item.get(key) and str(item[key]) not in names:
                names.append(str(item[key]))
    return names


def refresh(kube_bench_dir: Path, commit: str = "") -> None:
    """Rewrite the reference files from a kube-bench checkout: ids and tested names only."""
    commit = commit or subprocess.run(["git", "-C", str(kube_bench_dir), "rev-parse", "HEAD"], capture_output=True,
                                      text=True).stdout.strip() or "unknown"
    for kb_version in VERSIONS:
        checks = []
        for name in FILES:
            data = yaml.safe_load((kube_bench_dir / "cfg" / kb_version / f"{name}.yaml").read_text())
            for group in data["groups"]:
                for check in group["checks"]:
                    checks.append({"id": str(check["id"]), "group": str(group["id"]), "file": name,
                                   "scored": bool(check.get("scored")), "type": check.get("type") or "",
                                   "tests": _tested(check)})
        head = (f"# kube-bench cfg/{kb_version}: ids, file, scored/type and the names of the settings each check\n"
                f"# tests (no text). Regenerate: python3 scripts/kube_bench_coverage.py --refresh <kube-bench checkout>\n")
        body = {"source": {"repository": "aquasecurity/kube-bench", "commit": commit, "path": f"cfg/{kb_version}"},
                "checks": checks}
        lines = [head.rstrip("\n"), yaml.safe_dump({"source": body["source"]}, sort_keys=False).rstrip(), "checks:"]
        lines += [f"  - {yaml.safe_dump(c, default_flow_style=True, width=10**6, sort_keys=False).strip()}" for c in checks]
        (REFERENCE_DIR / f"{kb_version}.yml").write_text("\n".join(lines) + "\n")


def reference(kb_version: str) -> list[dict]:
    return yaml.safe_load((REFERENCE_DIR / f"{kb_version}.yml").read_text())["checks"]


def compare(kb_version: str) -> dict[str, list[str]]:
    """Differences between kube-bench's ids and hardline's catalog for one benchmark version."""
    kb = {c["id"]: c for c in reference(kb_version)}
    hl = {c.id: c for c in load_catalog("cis-kubernetes", VERSIONS[kb_version]).controls}
    both = [i for i in kb if i in hl]
    return {
        "only_kube_bench": [i for i in kb if i not in hl],
        "only_hardline": [i for i in hl if i not in kb],
        "status_differs": [i for i in both if kb[i]["scored"] != hl[i].automated],
        "kube_bench_no_test": [i for i in both if not kb[i]["tests"] and hl[i].kind],
        "ids": sorted(set(kb) | set(hl), key=lambda i: [int(p) for p in i.split(".")]),
    }


def documented_ids(kb_version: str) -> set[str]:
    """Ids the differences doc explains for this version: table rows `| cis-1.20 | 1.2.3 | ...`."""
    text = DIFFERENCES_DOC.read_text() if DIFFERENCES_DOC.exists() else ""
    found = set()
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] == kb_version:
            found.update(re.findall(r"\d+(?:\.\d+)+", cells[1]))
    return found


def undocumented(kb_version: str) -> list[str]:
    """Differing ids (by id or by automated/manual status) the differences doc does not explain."""
    diff = compare(kb_version)
    differing = diff["only_kube_bench"] + diff["only_hardline"] + diff["status_differs"]
    return [i for i in differing if i not in documented_ids(kb_version)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refresh", metavar="KUBE_BENCH_DIR", type=Path,
                        help="rewrite docs/kube-bench/*.yml from this kube-bench checkout first")
    parser.add_argument("--commit", default="", help="kube-bench commit to record (default: git rev-parse HEAD)")
    args = parser.parse_args()
    if args.refresh:
        refresh(args.refresh, args.commit)
    status = 0
    for kb_version, version in VERSIONS.items():
        diff = compare(kb_version)
        kb = reference(kb_version)
        hl = load_catalog("cis-kubernetes", version).controls
        print(f"{kb_version} (kube-bench {len(kb)} ids, {sum(c['scored'] for c in kb)} scored) vs "
              f"cis-kubernetes:{version} (hardline {len(hl)} ids, {sum(c.automated for c in hl)} automated)")
        for key, label in [("only_kube_bench", "only in kube-bench"), ("only_hardline", "only in hardline"),
                           ("status_differs", "automated/manual differs"),
                           ("kube_bench_no_test", "kube-bench tests nothing, hardline has a kind")]:
            print(f"  {label}: {', '.join(diff[key]) or '-'}")
        missing = undocumented(kb_version)
        if missing:
            print(f"  NOT EXPLAINED in {DIFFERENCES_DOC.relative_to(ROOT)}: {', '.join(missing)}")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
