"""The result model of a verification run: results, run metadata, score, and the JUnit/JSON forms.

One Result per (host, control[, subject]). Status is one of PASS, FAIL, ERROR, SKIP, MANUAL,
WAIVED. A RunResults is one run: its results plus the metadata an auditor needs to trust them
(when, which hardline and benchmark version, which inventory: path and sha256 of the inventory
file and its group_data files, which hosts). It is saved as JSON (``write_json``) and read back
(``load_json``) so reports can be rendered, merged and compared later (``hardline report``).

Score (see README "Score"): per host, each control counts once (its subjects folded to the worst
status). score = 100 * PASS / (PASS + FAIL + ERROR). SKIP, MANUAL and WAIVED are left out of
both sides; ERROR counts against the score (an unverified control is never a pass); an expired
waiver reports the control's own status (FAIL, ...) and so counts again.
JUnit: ``hardline.junit`` (the one writer for verify, report and drift).

Identity: a result is about (host, control key ``benchmark:version:id``, subject); comparisons
and merges use that key, so CIS Docker 1.1.1 and CIS Kubernetes 1.1.1 never meet.

Exit codes: 0 every control passed (or was skipped, manual or waived), 1 some failed,
2 some could not be verified (errors win over failures: an unverified host is worse than a
known failure). With a score gate (``--fail-under N``): 3 when a host's or the overall score
is below N (errors still give 2: they are worse), else 0 even with failures.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PASS, FAIL, ERROR, SKIP, MANUAL, WAIVED = "PASS", "FAIL", "ERROR", "SKIP", "MANUAL", "WAIVED"
STATUSES = (PASS, FAIL, ERROR, SKIP, MANUAL, WAIVED)
EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_BELOW_GATE = 0, 1, 2, 3
SCORED = (PASS, FAIL, ERROR)  # statuses in the score's denominator
# THE status order, used wherever statuses fold into one (a control's subjects, a pytest case,
# the score): the first one present wins. WAIVED ranks above PASS: a control some of whose
# subjects failed and were waived is a waived control, not a passing one.
WORST_FIRST = (ERROR, FAIL, WAIVED, PASS, MANUAL, SKIP)
JSON_FORMAT = "hardline-results/2"
READABLE_FORMATS = ("hardline-results/1", JSON_FORMAT)


def fold(statuses: Iterable[str]) -> str:
    """One status for several (a control's subjects): the worst in WORST_FIRST order."""
    present = set(statuses)
    if not present:
        raise ValueError("no status to fold")
    return next(s for s in WORST_FIRST if s in present)


@dataclass
class Verdict:
    """What a check found: the status and the evidence an auditor reads."""

    status: str
    expected: str = ""
    found: str = ""
    evidence: list[str] = field(default_factory=list)
    subject: str = ""  # what the verdict is about when a control has several (e.g. "container web (nginx:1.25)")
    differs: str = ""  # PASS with another value than the inventory's: "differs from inventory: ..."

    @property
    def message(self) -> str:
        parts = []
        if self.expected:
            parts.append(f"expected: {self.expected}")
        if self.found:
            parts.append(f"found: {self.found}")
        parts += self.evidence
        return "\n".join(parts)


@dataclass
class Result:
    host: str
    benchmark: str
    control_id: str
    slug: str
    title: str
    section: str
    section_title: str
    level: int
    automated: bool
    status: str
    expected: str = ""
    found: str = ""
    evidence: list[str] = field(default_factory=list)
    remediation: str = ""
    waiver: dict | None = None
    duration: float = 0.0
    subject: str = ""
    benchmark_version: str = ""
    differs: str = ""  # the host meets the requirement with another value than the inventory's

    @property
    def control_key(self) -> str:
        """``benchmark:version:id``."""
        return f"{self.benchmark}:{self.benchmark_version}:{self.control_id}"

    @property
    def name(self) -> str:
        return f"{self.control_id} {self.title}" + (f" [{self.subject}]" if self.subject else "")

    @property
    def message(self) -> str:
        return Verdict(self.status, self.expected, self.found, self.evidence).message

    def to_dict(self) -> dict:
        """The fields as a dict (its lists and dicts copied: dataclasses.asdict deep-copies
        every value, which costs more than the whole check for 30,000 results)."""
        out = {name: self.__dict__[name] for name in _RESULT_FIELDS}
        out["evidence"] = list(self.evidence)
        out["waiver"] = dict(self.waiver) if self.waiver is not None else None
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Result:
        known = {f.name for f in fields(cls)}
        result = cls(**{k: v for k, v in raw.items() if k in known})
        if not result.benchmark_version and result.benchmark == "cis-docker":
            # hardline-results/1 had one benchmark, CIS Docker 1.6.0, whose HL- controls are now
            # the hardline-platform benchmark
            result.benchmark_version = "1.6.0"
            if result.control_id.startswith("HL-"):
                result.benchmark, result.benchmark_version = "hardline-platform", "1"
        return result

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity across runs: host, control key, subject."""
        return (self.host, self.control_key, self.subject)


_RESULT_FIELDS = tuple(f.name for f in fields(Result))


def exit_code(results: list[Result]) -> int:
    statuses = {r.status for r in results}
    if ERROR in statuses:
        return EXIT_ERROR
    if FAIL in statuses:
        return EXIT_FAILED
    return EXIT_OK


def control_sort_key(control_id: str) -> tuple:
    """Natural order of control ids: 1.1.2 < 1.1.10 < 2.1; hardline's own HL controls last.
    A qualified key sorts by benchmark and version first."""
    if control_id.count(":") == 2:
        benchmark, version, control_id = control_id.split(":")
        return (benchmark == "hardline-platform", benchmark, version) + control_sort_key(control_id)
    own = control_id.startswith("HL")
    return (own,) + tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.-]", control_id.removeprefix("HL-")))


def result_sort_key(r: Result) -> tuple:
    return (r.host, control_sort_key(r.control_key), r.subject)


def counts(results: Iterable[Result]) -> Counter:
    return Counter(r.status for r in results)


# ------------------------------------------------------------------------------------- score


def control_statuses(results: Iterable[Result]) -> dict[tuple[str, str], str]:
    """One status per (host, control key): the worst of its subjects' statuses."""
    seen: dict[tuple[str, str, str, str], set[str]] = {}
    for r in results:  # keyed by the key's parts: no string built per result
        seen.setdefault((r.host, r.benchmark, r.benchmark_version, r.control_id), set()).add(r.status)
    return {(host, f"{b}:{v}:{cid}"): fold(statuses) for (host, b, v, cid), statuses in seen.items()}


@dataclass(frozen=True)
class Score:
    """A score and what it was computed from (controls, not subjects)."""

    passed: int
    failed: int
    errors: int
    waived: int
    manual: int
    skipped: int

    @property
    def scored(self) -> int:
        return self.passed + self.failed + self.errors

    @property
    def value(self) -> float | None:
        """Percentage of scored controls that pass; None when nothing could be scored."""
        return 100.0 * self.passed / self.scored if self.scored else None

    def text(self) -> str:
        return "n/a" if self.value is None else f"{self.value:.1f}"

    def below(self, threshold: float) -> bool:
        """True when the gate ``threshold`` is not met (nothing scored never meets a gate)."""
        return self.value is None or self.value < threshold

    def to_dict(self) -> dict[str, Any]:
        return {"score": None if self.value is None else round(self.value, 2), "scored": self.scored,
                "PASS": self.passed, "FAIL": self.failed, "ERROR": self.errors, "WAIVED": self.waived,
                "MANUAL": self.manual, "SKIP": self.skipped}


def score(results: Iterable[Result]) -> Score:
    """Score of a set of results (any mix of hosts): see the module docstring."""
    c = Counter(control_statuses(results).values())
    return Score(c[PASS], c[FAIL], c[ERROR], c[WAIVED], c[MANUAL], c[SKIP])


def host_scores(results: Iterable[Result]) -> dict[str, Score]:
    by_host: dict[str, list[Result]] = {}
    for r in results:
        by_host.setdefault(r.host, []).append(r)
    return {host: score(rs) for host, rs in sorted(by_host.items())}


def gate(results: list[Result], threshold: float) -> list[str]:
    """Why the results miss a ``--fail-under`` gate (empty when met): every host and the
    overall score must reach ``threshold``."""
    misses = [f"{host} scores {s.text()} < {threshold:g}" for host, s in host_scores(results).items()
              if s.below(threshold)]
    overall = score(results)
    if overall.below(threshold):
        misses.append(f"overall score {overall.text()} < {threshold:g}")
    return misses


def gated_exit_code(results: list[Result], threshold: float | None) -> int:
    """Exit code of a run: ``exit_code`` without a gate; with one, 2 on errors, else 3 when
    the gate is missed, else 0 (failures are tolerated by a score gate)."""
    if threshold is None:
        return exit_code(results)
    if any(r.status == ERROR for r in results):
        return EXIT_ERROR
    return EXIT_BELOW_GATE if gate(results, threshold) else EXIT_OK


# ------------------------------------------------------------------------ runs, JSON, merging


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def inventory_fingerprint(inventory_file: str | Path) -> dict[str, Any]:
    """Path and sha256 of the inventory file and of the group_data files pyinfra reads with it
    (``group_data/*.py`` beside the inventory and in the working directory), and one sha256
    over all of them: the same hash means the same inventory data."""
    inventory = Path(inventory_file)
    files = [inventory]
    for folder in (inventory.parent / "group_data", Path.cwd() / "group_data"):
        if folder.is_dir():
            files += sorted(p for p in folder.glob("*.py") if p not in files)
    entries = []
    for f in files:
        shown = f.resolve()
        shown = shown.relative_to(Path.cwd()) if shown.is_relative_to(Path.cwd()) else shown
        entries.append({"path": str(shown), "sha256": sha256_file(f)})
    combined = hashlib.sha256("".join(f"{e['sha256']}  {e['path']}\n" for e in entries).encode()).hexdigest()
    return {"path": str(inventory_file), "sha256": combined, "files": entries}


def _now() -> str:
    return dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds")


@dataclass
class RunResults:
    """One run: metadata plus results. ``meta`` keys: id, started, finished, duration,
    hardline_version, benchmarks [{id, title, version}] (every benchmark version in the run),
    benchmark (the one benchmark, or a summary of several), inventory {path, sha256, files},
    hosts, command, sections (filter, or null), level (filter, or null), label."""

    meta: dict[str, Any]
    results: list[Result]

    @classmethod
    def new(cls, results: list[Result], *, started: str, finished: str | None = None, duration: float = 0.0,
            inventory: str | Path | None = None, hosts: list[str] | None = None, command: list[str] | None = None,
            sections: list[str] | None = None, level: int | None = None, label: str = "") -> RunResults:
        from hardline import __version__

        benchmarks = benchmarks_of(results)
        meta = {
            "id": uuid.uuid4().hex[:12], "label": label, "started": started, "finished": finished or _now(),
            "duration": round(duration, 3), "hardline_version": __version__,
            "benchmarks": benchmarks, "benchmark": summary_benchmark(benchmarks), "level": level,
            "inventory": inventory_fingerprint(inventory) if inventory else None,
            "hosts": hosts if hosts is not None else sorted({r.host for r in results}),
            "command": command, "sections": sections,
        }
        return cls(meta, results)

    def to_dict(self) -> dict[str, Any]:
        return {**self.head(), "results": [r.to_dict() for r in self.results]}

    def head(self) -> dict[str, Any]:
        """Everything of to_dict() but the results."""
        return {"format": JSON_FORMAT, "run": self.meta,
                "summary": {"overall": score(self.results).to_dict(),
                            "hosts": {h: s.to_dict() for h, s in host_scores(self.results).items()},
                            "statuses": dict(counts(self.results))}}


def benchmarks_of(results: Iterable[Result]) -> list[dict[str, str]]:
    """{id, title, version} of every benchmark version the results are about."""
    from hardline.catalog import CatalogError, load_catalog

    found = []
    for benchmark, version in sorted({(r.benchmark, r.benchmark_version) for r in results}):
        try:
            title = load_catalog(benchmark, version).title
        except CatalogError:  # results of a benchmark version this hardline does not ship
            title = benchmark
        found.append({"id": benchmark, "title": title, "version": version})
    return found


def summary_benchmark(benchmarks: list[dict[str, str]]) -> dict[str, str]:
    """The run's benchmark for one-line displays: the only one, or all of them joined."""
    if len(benchmarks) == 1:
        return dict(benchmarks[0])
    return {"id": "+".join(b["id"] for b in benchmarks) or "none",
            "title": " / ".join(f"{b['title']} {b['version']}" for b in benchmarks), "version": ""}


def write_json(run: RunResults, path: str | Path) -> Path:
    """The run as JSON: metadata and summary indented, then one result per line (json's C
    encoder writes those; with indentation it would not, and 50 hosts x 20 containers are
    30,000 results)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = json.dumps(run.head(), indent=1, sort_keys=False)
    # the fields read in place (to_dict's copies are for callers that keep the dict), one encoder
    encode = json.JSONEncoder(check_circular=False).encode
    lines = ",\n".join(encode({name: r.__dict__[name] for name in _RESULT_FIELDS}) for r in run.results)
    path.write_text(head[:-2] + ',\n "results": [\n' + lines + ("\n ]\n}\n" if lines else "]\n}\n"))
    return path


class ResultsFileError(Exception):
    """A results file that is not hardline JSON results."""


def load_json(path: str | Path) -> RunResults:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ResultsFileError(f"{path}: cannot read results: {err}") from None
    if not isinstance(raw, dict) or raw.get("format") not in READABLE_FORMATS:
        raise ResultsFileError(f"{path}: not a hardline results file (format {JSON_FORMAT})")
    try:
        run = RunResults(dict(raw["run"]), [Result.from_dict(r) for r in raw["results"]])
    except (KeyError, TypeError) as err:
        raise ResultsFileError(f"{path}: malformed results: {err}") from None
    run.meta.setdefault("benchmarks", benchmarks_of(run.results))
    return run


def merge_runs(runs: list[RunResults]) -> RunResults:
    """Several runs as one result set: for each (host, benchmark), the results of the latest run
    that has it. Runs over different hosts add up, a Docker run and a Kubernetes run of the same
    host both stay, and a re-run of a host's benchmark replaces its older results."""
    if len(runs) == 1:
        return runs[0]
    ordered = sorted(runs, key=lambda r: r.meta.get("started") or "")
    owner: dict[tuple[str, str], int] = {}
    for i, run in enumerate(ordered):
        for pair in {(r.host, r.benchmark) for r in run.results}:
            owner[pair] = i
    results = [r for i, run in enumerate(ordered) for r in run.results if owner[(r.host, r.benchmark)] == i]
    inventories = {(r.meta.get("inventory") or {}).get("sha256") for r in ordered}
    benchmarks = benchmarks_of(results)
    hosts = sorted({h for h, _ in owner})
    meta = {
        "id": "+".join(str(r.meta.get("id")) for r in ordered), "label": "merged",
        "started": ordered[0].meta.get("started"), "finished": ordered[-1].meta.get("finished"),
        "duration": sum(r.meta.get("duration") or 0 for r in ordered),
        "hardline_version": ", ".join(sorted({str(r.meta.get("hardline_version")) for r in ordered})),
        "benchmarks": benchmarks, "benchmark": summary_benchmark(benchmarks),
        "inventory": ordered[-1].meta.get("inventory") if len(inventories) == 1 else None,
        "hosts": hosts, "command": None, "sections": None,
        "runs": [{k: r.meta.get(k) for k in ("id", "label", "started", "finished", "hardline_version", "inventory",
                                            "hosts", "benchmarks")}
                 | {"hosts_used": sorted({h for (h, _), i in owner.items() if i == n})}
                 for n, r in enumerate(ordered)],
    }
    return RunResults(meta, results)


NOT_PASSING = (FAIL, ERROR)


@dataclass
class Change:
    key: tuple[str, str, str]
    before: str | None  # None: not in the previous run
    after: str | None  # None: not in this run
    result: Result | None  # this run's result (None when gone)
    previous: Result | None


@dataclass
class Comparison:
    """What changed between a previous run and this one, per (host, control, subject)."""

    newly_failing: list[Change]  # now FAIL/ERROR, before something else (or absent)
    fixed: list[Change]  # before FAIL/ERROR, now PASS
    other: list[Change]  # any other status change (e.g. FAIL -> WAIVED, PASS -> SKIP, gone)
    scores_before: dict[str, Score]
    scores_after: dict[str, Score]
    overall_before: Score
    overall_after: Score
    previous_meta: dict[str, Any]

    @property
    def changed(self) -> bool:
        return bool(self.newly_failing or self.fixed or self.other)


def compare(previous: RunResults, current: RunResults) -> Comparison:
    """Compare two runs over the hosts of the current one."""
    hosts = {r.host for r in current.results}
    before = {r.key: r for r in previous.results if r.host in hosts}
    after = {r.key: r for r in current.results}
    newly, fixed, other = [], [], []
    for key in sorted(set(before) | set(after), key=lambda k: (k[0], control_sort_key(k[1]), k[2])):
        b, a = before.get(key), after.get(key)
        bs, as_ = (b.status if b else None), (a.status if a else None)
        if bs == as_:
            continue
        change = Change(key, bs, as_, a, b)
        if as_ in NOT_PASSING and bs not in NOT_PASSING:
            newly.append(change)
        elif bs in NOT_PASSING and as_ == PASS:
            fixed.append(change)
        else:
            other.append(change)
    prev_results = [r for r in previous.results if r.host in hosts]
    return Comparison(newly, fixed, other, host_scores(prev_results), host_scores(current.results),
                      score(prev_results), score(current.results), previous.meta)

