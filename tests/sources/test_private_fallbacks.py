"""On a torch without the private accessors (``torch._C._get_*``/``_set_*``), the public ones.

docs/internals.md lists each private name with its public counterpart. Here
torch's ``_C`` is seen through a view that hides every such accessor, so the
flag table falls back to the public counterparts: it must read the same
values and write them as exactly, whatever torch this runs on.
"""

from __future__ import annotations

from typing import Any

import torch

from repro_ctx.sources.flags import build_flags_source

HIDDEN = ("_get_", "_set_", "_cuda_get_", "_cuda_set_")
# Flags with no public fallback yet: their private accessor missing, they are
# left out of the state (docs/internals.md).
WITHOUT_FALLBACK = {
    "torch.backends.cudnn.depthwise_kernel",
    "torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction",
    "torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction",
}


class _WithoutAccessors:
    def __init__(self, c: Any) -> None:
        self._c = c

    def __getattr__(self, name: str) -> Any:
        if name.startswith(HIDDEN):
            raise AttributeError(name)
        return getattr(self._c, name)


class _TorchWithoutAccessors:
    _C = _WithoutAccessors(torch._C)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def _tables() -> tuple[dict[str, Any], dict[str, Any]]:
    real = {flag.name: flag for flag in build_flags_source(torch).flags}
    public = {flag.name: flag for flag in build_flags_source(_TorchWithoutAccessors()).flags}
    return real, public


def test_without_private_accessors_the_table_keeps_every_flag_with_a_fallback() -> None:
    real, public = _tables()
    assert set(public) == set(real) - WITHOUT_FALLBACK
    assert {name: flag.get() for name, flag in public.items()} == {
        name: real[name].get() for name in public
    }


def test_the_public_fallbacks_write_exactly_what_the_private_accessors_read() -> None:
    real, public = _tables()
    changed = 0
    for name, flag in public.items():
        before = real[name].get()
        if not isinstance(before, bool) or name.startswith("torch.backends.opt_einsum."):
            continue  # opt_einsum refuses enabled=True without the opt-einsum package
        try:
            flag.set(not before)
            assert real[name].get() is (not before), name
            changed += 1
        finally:
            flag.set(before)
        assert real[name].get() is before, name
    assert changed >= 5  # the boolean flags of even the oldest torch supported
