"""The cause ``environment``: two recordings from machines whose differences can change results.

Pure data, no torch: ``compare`` reads the environment records of the two
files (``record()`` embeds one), names the fields that can change results
and, for a floating-point op, how many ulps its samples differ by: only the
last bits is what another summation order gives.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..state.environment_diff import changing, differences
from .records import Cause, OpRecord, last_bits, max_ulp_difference, sample_differences

# Flags that are the environment's: compared with the records, which say why they matter.
ENVIRONMENT_FLAGS = frozenset({"torch.get_num_threads", "CUBLAS_WORKSPACE_CONFIG"})


def environment_cause(
    first: Mapping[str, object], second: Mapping[str, object],
    op: OpRecord | None, other: OpRecord | None,
) -> Cause | None:
    """Two recordings from environments that differ in a way that can change results."""
    found = [item for item in changing(differences(first, second)) if item.field != "hash_seed"]
    if not found:
        return None
    listed = "; ".join(item.why for item in found)
    fields = ", ".join(item.field for item in found)
    where, rounding = " the op streams part", False
    if op is not None and other is not None and op.name == other.name:
        where = f" op #{op.index} {op.name} is the first op whose outputs differ"
        ulps = max_ulp_difference(op, other)
        if ulps is not None:
            distance, dtype = ulps
            rounding = last_bits(distance, dtype)
            how = ("only in the last bits, as the same sum in another order does" if rounding
                   else "by more than rounding: another algorithm ran")
            where += (f", by at most {distance} ulp ({dtype.removeprefix('torch.')}) over "
                      f"the recorded samples: {how}")
    measured = sample_differences(op, other) if rounding and op and other else None
    accept = ("accept the difference and compare results with a tolerance"
              + (f" (rtol about {measured[1]:.1g} here)" if measured else "")
              + ", e.g. torch.testing.assert_close") if rounding else (
              "expect different results: a tolerance only covers differences in the last bits")
    return Cause(
        "environment",
        f"the recordings come from different environments ({fields}), and{where}. "
        f"{listed[0].upper()}{listed[1:]}",
        "run both on the same build and settings (same torch, CPU capability, threads, BLAS "
        f"and variables: compare them with `repro-ctx env-diff A.json B.json`), or {accept}",
    )
