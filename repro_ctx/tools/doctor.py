"""What ``repro-ctx`` and ``repro-ctx doctor`` report, as data and as text.

Both show, for every source a scope covers, what the process has now next
to what a scope sets, read from the sources themselves (``describe()``, or
the variables an environment source names): a new flag or a third-party
source appears without an edit here. Values that look like bugs get a
numbered note. Both end with the same verdict line: reproducible here or
not, and the first thing to fix.

``doctor --json`` prints ``doctor_report()``, whose layout is versioned by
``SCHEMA``/``SCHEMA_VERSION`` (see ``doctor_report``).

Longer than 400 lines because the report as data and the same report as
text are kept side by side, line for line, so that they cannot drift apart.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.source import Source
from ..scopes.deterministic import deterministic
from ..sources.default_set import describe_sources
from ..sources.plugin_registry import plugin_report
from ..state.environment_record import environment_record, hash_seed_fixed
from .selfcheck import diagnose, run_self_check, self_check_devices

PROG = "repro-ctx"
SCHEMA = "repro-ctx doctor"
SCHEMA_VERSION = 2  # 2: the environment record, and whether the hash seed is fixed


@dataclass(frozen=True)
class Setting:
    """One row: a setting's value now and inside the scope (``variable``: an env var)."""

    name: str
    now: object
    in_scope: object
    variable: bool = False

    @property
    def changed(self) -> bool:
        return self.now != self.in_scope


@dataclass(frozen=True)
class Covered:
    """One source: its settings, or (an RNG) a state that the scope seeds and restores."""

    name: str
    settings: tuple[Setting, ...] | None
    seeded: str = ""


def _read(source: Source) -> tuple[dict[str, object], bool] | None:
    """A source's settings as it describes them; ``None`` for a source that holds a state."""
    variables = getattr(source, "variables", None)
    if isinstance(variables, (tuple, list)):
        return {str(name): os.environ.get(str(name)) for name in variables}, True
    describe = getattr(source, "describe", None)
    if describe is not None:
        described = describe()
        if isinstance(described, Mapping):
            return {str(key): value for key, value in described.items()}, False
    return None


def covered(seed: int | None) -> list[Covered]:
    """Every source of ``deterministic(seed)``: its settings now and inside the scope."""
    scope = deterministic(seed)
    sources = scope.sources()
    now = [_read(source) for source in sources]
    with scope:
        inside = [_read(source) for source in sources]
    out: list[Covered] = []
    for source, before, during in zip(sources, now, inside, strict=True):
        if before is None or during is None:
            seeded = f"seeded from {seed}" if seed is not None else "kept, restored on exit"
            out.append(Covered(source.name, None, seeded))
            continue
        values, variable = before
        out.append(Covered(source.name, tuple(
            Setting(name, value, during[0].get(name, value), variable)
            for name, value in values.items()
        )))
    return out


# Explanations of values that look like bugs: (name or prefix, when, why).
_NOTES: tuple[tuple[str, Callable[[object], bool], str], ...] = (
    ("torch._inductor.config.", lambda value: value is None,
     "None: torch._inductor is not imported yet (torch.compile imports it); a scope sets it "
     "once it is"),
    ("torch.utils.deterministic.fill_uninitialized_memory", lambda value: value is True,
     "torch fills new memory (NaN, or the largest integer) only while deterministic "
     "algorithms are on"),
    ("torch.backends.cudnn.allow_tf32", lambda value: value is True,
     "True is torch's default: cuDNN convolutions may use TF32 (CUDA only)"),
    ("torch.backends.cuda.matmul.allow_", lambda value: isinstance(value, list),
     "[allowed, allowed with split-K reductions]"),
    ("torch.backends.cudnn.benchmark_limit", lambda value: value is None,
     "None: cuDNN is not available in this build"),
    ("torch.backends.opt_einsum.strategy", lambda value: value is None,
     "None: the opt_einsum package is not installed"),
    ("fp32_precision[", lambda value: value == "none",
     "'none': not set; the node follows its parent (generic.all, then torch's default)"),
)


def notes(sources: Sequence[Covered]) -> dict[str, str]:
    """The note for each setting whose value (now or in the scope) looks like a bug."""
    found: dict[str, str] = {}
    for source in sources:
        for setting in source.settings or ():
            for prefix, applies, text in _NOTES:
                if setting.name.startswith(prefix) and (
                    applies(setting.now) or applies(setting.in_scope)
                ):
                    found[setting.name] = text
                    break
    return found


def shown(value: object, variable: bool = False) -> str:
    """A value as the table shows it: unquoted strings, ``unset`` for a missing variable."""
    if value is None:
        return "unset" if variable else "None"
    if isinstance(value, list):
        return "[" + ", ".join(shown(item) for item in value) + "]"
    return str(value)


def covered_lines(sources: Sequence[Covered], seed: int | None) -> list[str]:
    """The two-column table (now, in scope) and its notes."""
    explained = notes(sources)
    texts = list(dict.fromkeys(explained.values()))  # one number per explanation
    numbers = {name: texts.index(text) + 1 for name, text in explained.items()}
    header = ("", "now", "in scope")
    rows: list[tuple[str, str, str]] = []
    for source in sources:
        if source.settings is None:
            rows.append((f"  {source.name}", "its own state", source.seeded))
            continue
        if not source.settings:
            continue
        rows.append((f"  {source.name}", "", ""))
        for setting in source.settings:
            mark = f" [{numbers[setting.name]}]" if setting.name in numbers else ""
            rows.append((
                f"  {'*' if setting.changed else ' '} {setting.name}{mark}",
                shown(setting.now, setting.variable),
                shown(setting.in_scope, setting.variable),
            ))
    width_name = max(len(row[0]) for row in (header, *rows))
    width_now = max(len(row[1]) for row in (header, *rows))
    lines = [
        f"what a scope covers here: the value now, and inside deterministic(seed={seed}) "
        "(* where the scope changes it)",
        f"{header[0].ljust(width_name)}  {header[1].ljust(width_now)}  {header[2]}".rstrip(),
    ]
    lines += [
        f"{name.ljust(width_name)}  {now.ljust(width_now)}  {inside}".rstrip()
        for name, now, inside in rows
    ]
    if texts:
        lines.append("notes")
        lines += [f"  [{number}] {text}" for number, text in enumerate(texts, 1)]
    return lines


def verdict(
    checks: Sequence[Mapping[str, Any]],
    hash_randomized: bool,
    cuda_without_workspace: bool,
    diagnoses: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Reproducible here or not, and the first thing to fix, in one line."""
    failed = [check["device"] for check in checks if not check["deterministic"]]
    devices = ", ".join(check["device"] for check in checks)
    fix: str | None
    if failed:
        device = failed[0]
        fix = (diagnoses or {}).get(device) or (
            "find the op with repro_ctx.find_divergence(step) on your own training step"
        )
        line = (f"verdict: NOT reproducible here: a seeded training step gave different weights "
                f"in two runs on {device}; first thing to fix: {fix}")
    else:
        if cuda_without_workspace:
            fix = ("set CUBLAS_WORKSPACE_CONFIG=:4096:8 before the program starts (`repro-ctx "
                   "run -- CMD` does): cuBLAS reads it once, at its first use")
        elif hash_randomized:
            fix = ("start programs with `repro-ctx run -- CMD`, which fixes PYTHONHASHSEED, so "
                   "that str hashes and set order repeat across processes")
        else:
            fix = None
        line = (f"verdict: reproducible here (a seeded training step repeated bit for bit on "
                f"{devices}); first thing to fix: {fix or 'nothing'}")
    return {"reproducible": not failed, "first_fix": fix, "line": line}


def process_verdict(
    checks: Sequence[Mapping[str, Any]], diagnoses: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``verdict`` for this process: its hashing and its CUDA and cuBLAS setup."""
    import torch

    cuda = bool(torch.cuda.is_available())
    return verdict(
        checks, not hash_seed_fixed(),
        cuda and os.environ.get("CUBLAS_WORKSPACE_CONFIG") is None, diagnoses,
    )


def _check_data(device: str, seed: int) -> tuple[dict[str, Any], Any]:
    check = run_self_check(device, seed=seed)
    return {
        "device": check.device,
        "seed": seed,
        "first": check.first,
        "second": check.second,
        "outside": check.outside,
        "deterministic": check.deterministic,
    }, check


def self_checks(seed: int) -> tuple[list[dict[str, Any]], dict[str, str], list[Any]]:
    """The self-check on every device; where it failed, find_divergence's fix."""
    data, checks = [], []
    diagnoses: dict[str, str] = {}
    for device in self_check_devices():
        entry, check = _check_data(device, seed)
        data.append(entry)
        checks.append(check)
        if not check.deterministic:
            fix = diagnose(device, seed)
            if fix is not None:
                diagnoses[device] = fix
    return data, diagnoses, checks


def doctor_report(seed: int = 0) -> dict[str, Any]:
    """Everything ``repro-ctx doctor`` reports, as JSON-ready data.

    Schema ``"repro-ctx doctor"``, version 2. Keys: ``schema``,
    ``schema_version``; ``versions`` (python, torch, cuda, cudnn, numpy);
    ``devices`` (type, name, and threads or index and capability);
    ``flags`` (``describe_sources()`` now: per source a dict of settings, or
    ``"captured"``); ``scope`` (``seed``, and ``sources``: per source its
    ``kind``, ``"settings"``, ``"variables"`` (environment variables, ``null``
    when unset) or ``"state"`` (an RNG), with ``settings``:
    ``{name: {"now", "in_scope"}}``, or for a state ``in_scope``: what the
    scope does to it); ``notes`` (``{setting: explanation}``); ``environment``
    (``hash_randomization`` of this interpreter, ``PYTHONHASHSEED``,
    ``hash_seed_fixed``: whether str hashes repeat across runs, which
    ``PYTHONHASHSEED`` decides, ``CUBLAS_WORKSPACE_CONFIG``);
    ``environment_record`` (``environment_record()``: what ``repro-ctx
    env-diff`` compares, read before the self-check); ``self_check`` (per device: seed,
    first, second, outside, deterministic); ``deterministic``; ``verdict``
    (``reproducible``, ``first_fix``, ``line``); ``plugins`` (every source
    plugin found: ``{name: {"from", "status", "state_dict"?}}``, status
    ``active``, ``dropped: ...`` or ``failed to load: ...``). New keys may be added
    within a version; a key's meaning changes only with a new version.
    Version 2 added ``environment_record`` and ``environment.hash_seed_fixed``.
    """
    import platform

    import numpy as np
    import torch


    flags = describe_sources()  # before the self-check, which may initialise CUDA
    record = environment_record()
    sources = covered(seed)
    checks, diagnoses, _objects = self_checks(seed)
    cudnn: Any = torch.backends.cudnn  # untyped in torch's stubs
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": cudnn.version() if cudnn.is_available() else None,
            "numpy": np.__version__,
        },
        "devices": devices(torch),
        "flags": flags,
        "scope": scope_data(sources, seed),
        "notes": notes(sources),
        "environment": {
            "hash_randomization": bool(sys.flags.hash_randomization),
            "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED"),
            "hash_seed_fixed": hash_seed_fixed(),
            "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        },
        "environment_record": record,
        "self_check": checks,
        "deterministic": all(check["deterministic"] for check in checks),
        "verdict": process_verdict(checks, diagnoses),
        "plugins": plugin_report(),
    }


def scope_data(sources: Sequence[Covered], seed: int | None) -> dict[str, Any]:
    """The ``scope`` entry of the report: per source, its kind and what the scope does."""
    data: dict[str, Any] = {}
    for source in sources:
        if source.settings is None:
            data[source.name] = {"kind": "state", "in_scope": source.seeded}
            continue
        variables = any(setting.variable for setting in source.settings)
        data[source.name] = {
            "kind": "variables" if variables else "settings",
            "settings": {
                setting.name: {"now": setting.now, "in_scope": setting.in_scope}
                for setting in source.settings
            },
        }
    return {"seed": seed, "sources": data}


def sources_from_data(scope: Mapping[str, Any]) -> list[Covered]:
    """The ``scope`` entry of a report back as rows, for the text."""
    out: list[Covered] = []
    for name, entry in scope["sources"].items():
        if entry["kind"] == "state":
            out.append(Covered(name, None, entry["in_scope"]))
            continue
        variable = entry["kind"] == "variables"
        out.append(Covered(name, tuple(
            Setting(key, values["now"], values["in_scope"], variable)
            for key, values in entry["settings"].items()
        )))
    return out


def devices(torch: Any) -> list[dict[str, object]]:
    import platform

    found: list[dict[str, object]] = [
        {
            "type": "cpu",
            "name": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
        }
    ]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(index)
            found.append({
                "type": "cuda",
                "index": index,
                "name": torch.cuda.get_device_name(index),
                "capability": f"{major}.{minor}",
            })
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append({"type": "mps", "name": "Apple MPS"})
    return found


def _unset(value: object, none: str = "unset") -> str:
    return none if value is None else str(value)


def doctor_lines(report: Mapping[str, Any]) -> list[str]:
    """``repro-ctx doctor``'s text for a report from ``doctor_report``."""
    versions = report["versions"]
    lines = [
        f"versions: python {versions['python']}, torch {versions['torch']}, "
        f"CUDA {_unset(versions['cuda'], 'none')}, cuDNN {_unset(versions['cudnn'], 'none')}, "
        f"NumPy {versions['numpy']}",
        "devices: " + "; ".join(
            f"{device['type']} ("
            + ", ".join(f"{key} {value}" for key, value in device.items() if key != "type")
            + ")"
            for device in report["devices"]
        ),
        "",
    ]
    scope = report["scope"]
    lines += covered_lines(sources_from_data(scope), scope["seed"])
    env = report["environment"]
    if not env.get("hash_seed_fixed", not env["hash_randomization"]):
        hashing = ("randomised: str and bytes hashes, and set order, change from one run of "
                   "Python to the next")
    elif report.get("environment_record", {}).get("hash_seed", {}).get("PYTHONHASHSEED"):
        seed = report["environment_record"]["hash_seed"]["PYTHONHASHSEED"]
        hashing = f"fixed (PYTHONHASHSEED={seed} when it started)"
    else:
        hashing = "fixed (PYTHONHASHSEED was set when it started)"
    lines += plugin_lines(report.get("plugins", {}))
    lines += [
        "",
        "this process",
        f"  str hashing: {hashing}. A scope cannot change it for this interpreter; it sets "
        f"PYTHONHASHSEED for the programs it starts, and `{PROG} run` starts one with it set",
        "",
        "self-check: a small training step run twice in deterministic(seed), compared bitwise",
    ]
    for check in report["self_check"]:
        result = "bitwise equal" if check["deterministic"] else "DIFFERENT: nondeterministic"
        lines.append(f"  {check['device']}: {check['first']} / {check['second']}: {result}")
    lines.append(report["verdict"]["line"])
    return lines


def plugin_lines(plugins: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The source plugins found (entry points ``repro_ctx.sources`` and ``register_source``)."""
    if not plugins:
        return ["", "source plugins: none found (entry-point group repro_ctx.sources, "
                    "or register_source())"]
    lines = ["", "source plugins"]
    for name, entry in plugins.items():
        saved = f", saved in state_dict: {entry['state_dict']}" if "state_dict" in entry else ""
        lines.append(f"  {name}: {entry['status']} (from {entry['from']}{saved})")
    return lines


def main_job_lines(seed: int) -> tuple[list[str], bool]:
    """``repro-ctx`` alone: the table, the self-check (twice in a scope, once out), the verdict."""
    sources = covered(seed)
    lines = covered_lines(sources, seed)
    lines += ["", f"self-check: a small training step, twice inside deterministic(seed={seed}), "
                  "once outside"]
    checks, diagnoses, objects = self_checks(seed)
    for check in objects:
        same = "bitwise equal" if check.deterministic else "DIFFERENT"
        outside = "equal" if check.outside_matches else "different, as expected without a scope"
        lines.append(f"  {check.device}: inside runs {check.first} / {check.second}: {same}")
        lines.append(f"  {check.device}: outside run {check.outside}: {outside}")
    result = process_verdict(checks, diagnoses)
    lines.append(result["line"])
    return lines, bool(result["reproducible"])
