"""The ``repro-ctx`` command line (also ``python -m repro_ctx``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _report(args: argparse.Namespace) -> int:
    from ._selfcheck import run_self_check
    from ._sources import describe_sources

    print("repro_ctx: what a scope captures, seeds and restores here")
    for name, detail in describe_sources().items():
        if isinstance(detail, dict):
            print(f"  {name}:")
            for key, value in detail.items():
                print(f"    {key} = {value!r}")
        else:
            print(f"  {name}")
    devices = ["cpu"]
    import torch

    if torch.cuda.is_available():
        devices.append("cuda")
    status = 0
    print("\nself-check: a small training step, twice inside deterministic(seed=0), once outside")
    for device in devices:
        check = run_self_check(device, seed=args.seed)
        same = "bitwise equal" if check.deterministic else "DIFFERENT"
        outside = "equal" if check.outside_matches else "different, as expected without a scope"
        print(f"  {device}: inside runs {check.first} / {check.second}: {same}")
        print(f"  {device}: outside run {check.outside}: {outside}")
        if not check.deterministic:
            status = 1
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repro-ctx",
        description="Scoped reproducibility for PyTorch and NumPy. With no command: show what "
        "a scope covers here and check that a training step is reproducible inside one.",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the self-check (default 0)")
    parser.set_defaults(handler=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
