"""TF32: the legacy and fp32_precision APIs, never mixed by a scope."""

from __future__ import annotations

import warnings

import pytest
import torch

from repro_ctx import deterministic
from repro_ctx.sources.tf32 import TF32Source
from tests.global_state import flag_state

matmul = torch.backends.cuda.matmul
cudnn = torch.backends.cudnn
HAS_NEW_API = hasattr(torch.backends, "fp32_precision")
needs_new_api = pytest.mark.skipif(not HAS_NEW_API, reason="fp32_precision API is torch >= 2.9")


def _legacy_readable() -> bool:
    try:
        torch.get_float32_matmul_precision()
        _ = matmul.allow_tf32
        _ = cudnn.allow_tf32
    except RuntimeError:
        return False
    return True


@needs_new_api
def test_fact_reading_legacy_after_the_new_api_raises() -> None:
    """FACTS: mixing the two TF32 APIs raises on read (pytorch#179445)."""
    torch.set_float32_matmul_precision("highest")
    matmul.fp32_precision = "tf32"
    with pytest.raises(RuntimeError, match="mix of the legacy and new APIs"):
        _ = matmul.allow_tf32
    matmul.allow_tf32 = False  # the legacy setter still works, and makes it consistent
    assert matmul.fp32_precision == "ieee"
    assert _legacy_readable()


@pytest.mark.parametrize("precision", ["highest", "high", "medium"])
@pytest.mark.parametrize("allow", [True, False])
def test_legacy_programs_keep_readable_legacy_flags(precision: str, allow: bool) -> None:
    torch.set_float32_matmul_precision(precision)
    cudnn.allow_tf32 = allow
    before = flag_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with deterministic(0, tf32=not allow):
            assert _legacy_readable()
            assert cudnn.allow_tf32 is (not allow)
        with deterministic(0, tf32=False):
            assert torch.get_float32_matmul_precision() == "highest"
    assert _legacy_readable()
    assert flag_state() == before


@needs_new_api
@pytest.mark.parametrize("tf32", [True, False])
def test_new_api_programs_are_configured_through_the_new_api(tf32: bool) -> None:
    matmul.fp32_precision = "tf32"
    cudnn.conv.fp32_precision = "ieee"
    assert not _legacy_readable()
    before = flag_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with deterministic(0, tf32=tf32):
            want = "tf32" if tf32 else "ieee"
            assert matmul.fp32_precision == want
            assert cudnn.conv.fp32_precision == want
            assert cudnn.rnn.fp32_precision == want
    assert flag_state() == before
    assert matmul.fp32_precision == "tf32"
    assert cudnn.conv.fp32_precision == "ieee"


@needs_new_api
def test_switching_api_inside_the_scope_is_undone() -> None:
    torch.set_float32_matmul_precision("high")
    torch.backends.mkldnn.matmul.fp32_precision = "none"
    before = flag_state()
    with deterministic(0):
        torch.backends.fp32_precision = "tf32"
        matmul.fp32_precision = "tf32"
        cudnn.conv.fp32_precision = "ieee"
    assert flag_state() == before
    assert _legacy_readable()
    assert torch.get_float32_matmul_precision() == "high"


@needs_new_api
def test_every_precision_node_is_captured() -> None:
    source = TF32Source(torch)
    names = set(source.describe())
    assert {
        "fp32_precision[generic.all]",
        "fp32_precision[cuda.matmul]",
        "fp32_precision[cuda.conv]",
        "fp32_precision[cuda.rnn]",
        "fp32_precision[mkldnn.matmul]",
    } <= names


def test_tf32_none_writes_nothing() -> None:
    torch.set_float32_matmul_precision("medium")
    before = flag_state()
    with deterministic(0, tf32=None):
        assert torch.get_float32_matmul_precision() == "medium"
    assert flag_state() == before
