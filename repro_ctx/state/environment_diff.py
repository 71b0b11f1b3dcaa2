"""Two environment records side by side: which differences can change results, and how.

Pure data, no torch: ``repro-ctx env-diff``, ``compare()`` and a state
dict's restore read records written on other machines. A difference
either can change results (another torch, CPU capability, thread count,
BLAS, a variable that picks kernels, ...) or only describes the machine
(the kernel release, the number of cores, how the GPUs were read).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .environment_record import SCHEMA, flatten

# Fields that say how something was read, or that a difference elsewhere already names.
_SKIPPED = frozenset({"schema", "schema_version", "gpus.read", "variables",
                      "flags.torch.get_num_threads"})

# field (exact, or a prefix ending in "."): (changes results, why). "{a}"/"{b}": the values.
_WHY: dict[str, tuple[bool, str]] = {
    "python.version": (True, "different Python: random's algorithms, hashing and the "
                             "standard library can change between releases"),
    "python.implementation": (True, "another Python implementation"),
    "python.build": (False, "another build of the same Python"),
    "python.compiler": (False, "Python built by another compiler"),
    "torch.version": (True, "different torch: kernels and RNG can change between releases"),
    "torch.git_version": (True, "another torch build: kernels can change between commits"),
    "torch.cuda": (True, "CUDA {a} vs {b}: GPU kernels and the libraries' choice of them "
                         "change between CUDA releases"),
    "torch.cudnn": (True, "cuDNN {a} vs {b}: convolution algorithms change between releases"),
    "torch.hip": (True, "ROCm {a} vs {b}: GPU kernels change between releases"),
    "torch.xpu": (True, "XPU {a} vs {b}: GPU kernels change between releases"),
    "torch.cpu_capability": (True, "CPU capability {a} vs {b}: vectorised reductions sum in "
                                   "another order"),
    "torch.blas": (True, "torch's BLAS {a} vs {b}: matrix products sum in another order"),
    "torch.lapack": (True, "torch's LAPACK {a} vs {b}: decompositions can round differently"),
    "torch.openmp": (False, "another OpenMP runtime"),
    "torch.threads": (True, "threads {a} vs {b}: parallel reductions split differently"),
    "torch.interop_threads": (False, "inter-op threads {a} vs {b}: independent ops run "
                                     "concurrently, each giving the same values"),
    "numpy.version": (True, "different NumPy: its kernels and Generator methods can change "
                            "between releases"),
    "numpy.blas": (True, "NumPy's BLAS {a} vs {b}: np.dot and matmul sum in another order"),
    "numpy.lapack": (True, "NumPy's LAPACK {a} vs {b}: decompositions can round differently"),
    "threadpools": (True, "the BLAS and OpenMP runtimes loaded (their kernels and threads) "
                          "differ"),
    "os.system": (True, "another OS: its math library rounds some functions differently"),
    "os.release": (False, "another OS kernel release"),
    "os.machine": (True, "another CPU architecture: other kernels run"),
    "os.libc": (True, "libc {a} vs {b}: its math functions (exp, log, sin) can round "
                      "differently"),
    "cpu.model": (True, "another CPU: MKL and OpenBLAS pick their kernels per CPU"),
    "cpu.count": (False, "another number of cores (the thread counts are compared apart)"),
    "gpus.devices": (True, "other GPUs: kernels are chosen per architecture"),
    "gpus.driver": (True, "GPU driver {a} vs {b}: the JIT-compiled kernels can change"),
    "hash_seed": (True, "str hashing {a} vs {b}: set order and whatever follows it differ"),
    "git.commit": (True, "another commit of the code: the program itself changed"),
    "git": (True, "the code is in a git working directory in one only"),
    "packages.": (True, "different {name}: its defaults and code paths can change"),
    "flags.": (True, "{name} {a} vs {b}: selects other kernels or precision"),
    "variables.OMP_NUM_THREADS": (True, "OMP_NUM_THREADS {a} vs {b}: parallel reductions "
                                        "split differently"),
    "variables.MKL_NUM_THREADS": (True, "MKL_NUM_THREADS {a} vs {b}: MKL's products split "
                                        "differently"),
    "variables.OPENBLAS_NUM_THREADS": (True, "OPENBLAS_NUM_THREADS {a} vs {b}: OpenBLAS's "
                                             "products split differently"),
    "variables.ATEN_CPU_CAPABILITY": (True, "ATEN_CPU_CAPABILITY {a} vs {b}: torch's CPU "
                                            "kernels use another vector width"),
    "variables.MKL_CBWR": (True, "MKL_CBWR {a} vs {b}: MKL's conditional numerical "
                                 "reproducibility picks other code paths"),
    "variables.OPENBLAS_CORETYPE": (True, "OPENBLAS_CORETYPE {a} vs {b}: OpenBLAS runs the "
                                          "kernels of another CPU"),
    "variables.CUBLAS_WORKSPACE_CONFIG": (True, "CUBLAS_WORKSPACE_CONFIG {a} vs {b}: cuBLAS "
                                                "is deterministic only with it set"),
    "variables.NCCL_": (True, "{name} {a} vs {b}: NCCL's collective algorithms and their "
                              "reduction order change"),
    "variables.": (True, "{name} {a} vs {b}: read by a library that picks kernels or their "
                         "order"),
}


@dataclass(frozen=True, slots=True)
class Difference:
    """One field that differs: its values, whether it can change results, and why.

    ``why`` names both values: "threads 8 vs 2: parallel reductions split differently".
    """

    field: str
    first: object
    second: object
    changes_results: bool
    why: str

    def line(self) -> str:
        mark = "can change results" if self.changes_results else "does not change results"
        return f"{self.field}: {self.why} ({mark})"


def shown(value: object) -> str:
    """A value as a difference shows it: ``unset`` for ``None``, devices by name."""
    if value is None:
        return "unset"
    if isinstance(value, list):
        return "[" + ", ".join(shown(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return " ".join(str(item) for item in value.values())
    return str(value)


def _flat(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record (nested) or a summary (flat already), flat; the hash seed as one value."""
    flat = flatten(record) if record.get("schema") == SCHEMA else dict(record)
    if "hash_seed.fixed" in flat:
        seed = flat.pop("hash_seed.PYTHONHASHSEED", None)
        fixed = flat.pop("hash_seed.fixed")
        flat["hash_seed"] = f"fixed ({seed})" if fixed else "randomised"
    return flat


def _explain(field: str, a: object, b: object) -> tuple[bool, str]:
    entry = _WHY.get(field)
    name = field
    if entry is None:
        prefixes = sorted(
            (key for key in _WHY if key.endswith((".", "_")) and field.startswith(key)),
            key=len, reverse=True)
        if not prefixes:
            return True, f"{shown(a)} vs {shown(b)}"
        entry, name = _WHY[prefixes[0]], field[len(prefixes[0]):]
        if prefixes[0] == "variables.NCCL_":
            name = field.removeprefix("variables.")
    changes, why = entry
    if "{a}" not in why:
        why = f"{{a}} vs {{b}}: {why}"
    return changes, why.format(a=shown(a), b=shown(b), name=name)


def differences(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[Difference]:
    """Every field that differs between two records (or summaries), in the first's order.

    A field that only one of them holds (an older record, a summary against
    a record) is no difference, since nothing is known of the other side;
    except a variable, which a record holds only where it is set.
    """
    a, b = _flat(first), _flat(second)
    found = []
    for field in dict.fromkeys([*a, *b]):
        if field in _SKIPPED or field not in a or field not in b or a[field] == b[field]:
            continue
        changes, why = _explain(field, a[field], b[field])
        found.append(Difference(field, a[field], b[field], changes, why))
    # a variable set on one side only is absent from the other's ``variables``
    both = all(any(key == "variables" or key.startswith("variables.") for key in side)
               for side in (a, b))
    for field in dict.fromkeys([*a, *b]):
        if both and field.startswith("variables.") and (field in a) != (field in b):
            value_a, value_b = a.get(field), b.get(field)
            changes, why = _explain(field, value_a, value_b)
            found.append(Difference(field, value_a, value_b, changes, why))
    return found


def changing(found: list[Difference]) -> list[Difference]:
    """The differences that can change results."""
    return [difference for difference in found if difference.changes_results]


def verdict_line(found: list[Difference]) -> str:
    """One line: whether the two environments can give different results."""
    results = changing(found)
    if results:
        fields = ", ".join(difference.field for difference in results)
        return (f"verdict: these environments can give different results ({len(results)} "
                f"difference(s) that can: {fields}); run both on the same build and "
                "settings, or compare results with a tolerance")
    if found:
        return (f"verdict: same results expected: {len(found)} difference(s), none of which "
                "changes results")
    return "verdict: same environment: no difference"


def record_in(data: object, where: str) -> dict[str, Any]:
    """The environment record in a ``doctor --json`` report, a ``record()`` file or a bare record.

    ``ValueError`` names what was expected, for anything else.
    """
    if isinstance(data, Mapping):
        for candidate in (data, data.get("environment_record"), data.get("environment")):
            if isinstance(candidate, Mapping) and candidate.get("schema") == SCHEMA:
                return dict(candidate)
    raise ValueError(
        f"{where} holds no environment record: expected the output of `repro-ctx doctor "
        "--json` (schema 2 or later), a file written by repro_ctx.record(), or a record "
        "itself (schema 'repro-ctx environment')"
    )


def summary_in(state_dict: Mapping[str, Any]) -> dict[str, Any] | None:
    """The environment summary a state dict carries; ``None`` in one saved without it.

    ``ValueError`` for one that is not ``{field: str, int, float, bool or None}``.
    """
    summary = state_dict.get("environment")
    if summary is None:
        return None
    if not isinstance(summary, Mapping) or not all(
        isinstance(key, str) and (value is None or isinstance(value, (str, int, float, bool)))
        for key, value in summary.items()
    ):
        raise ValueError("malformed RNGState state dict: 'environment' must be a dict of "
                         "field names to str, int, float, bool or None")
    return dict(summary)


def summary_lines(saved: Mapping[str, Any], here: Mapping[str, Any]) -> list[str]:
    """``"environment summary: ..."`` for each difference of two summaries that can change results.

    Named apart from the ``environment`` source (the variables a scope sets).
    """
    return [f"environment summary: {item.why}" for item in changing(differences(saved, here))]


def restore_warning(saved: Mapping[str, Any], here: Mapping[str, Any]) -> str | None:
    """The one warning a restore gives where the saved environment differs; ``None``: same."""
    lines = [item.why for item in changing(differences(saved, here))]
    if not lines:
        return None
    listed = "\n".join(f"  - {line} (saved vs here)" for line in lines)
    return (f"this RNG state was saved in an environment that differs from this one in "
            f"{len(lines)} way(s) that can change results; the streams are restored, but "
            f"what they compute can differ from the run that saved them:\n{listed}")
