"""Raw state copies (repro_ctx._rawstate) against the public APIs they replace.

Run: python benchmarks/bench_rawstate.py   (medians per call, and ratios)
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import environment_note, per_call_medians

from repro_ctx._rawstate import (
    FAST_PATHS,
    bitgen_get,
    bitgen_set,
    legacy_get,
    legacy_set,
    random_get,
    random_set,
)


def main() -> None:
    print(environment_note())
    print("fast paths enabled:", dict(FAST_PATHS))
    r = random.Random(1)
    rs = np.random.RandomState(1)
    rs.randn(1)  # cached Gaussian
    r_snap, r_pub = random_get(r), r.getstate()
    l_snap, l_pub = legacy_get(rs), rs.get_state(legacy=False)
    pairs = {
        "random.Random get": (lambda: random_get(r), r.getstate),
        "random.Random set": (lambda: random_set(r, r_snap), lambda: r.setstate(r_pub)),
        "RandomState get": (lambda: legacy_get(rs), lambda: rs.get_state(legacy=False)),
        "RandomState set": (lambda: legacy_set(rs, l_snap), lambda: rs.set_state(l_pub)),
    }
    for cls in (np.random.MT19937, np.random.PCG64, np.random.Philox, np.random.SFC64):
        bg = cls(1)
        snap, pub = bitgen_get(bg), bg.state

        def public_set(bg: np.random.BitGenerator = bg, pub: dict[str, object] = pub) -> None:
            bg.state = pub

        pairs[f"{cls.__name__} get"] = (lambda bg=bg: bitgen_get(bg), lambda bg=bg: bg.state)
        pairs[f"{cls.__name__} set"] = (lambda bg=bg, s=snap: bitgen_set(bg, s), public_set)
    print(f"\n{'operation':<22} {'raw us':>8} {'public us':>10} {'raw/public':>10}")
    for name, (fast, public) in pairs.items():
        medians = per_call_medians({"raw": fast, "public": public}, calls=500, rounds=9)
        ratio = medians["raw"] / medians["public"]
        raw, public = medians["raw"] * 1e6, medians["public"] * 1e6
        print(f"{name:<22} {raw:8.2f} {public:10.2f} {ratio:10.3f}")


if __name__ == "__main__":
    main()
