"""What the NVML meter asks of the test's own CUDA libraries (torch, cupy).

Only libraries the test already imported are touched (looked up in ``sys.modules``,
never imported here): importing torch costs seconds, and initialising CUDA for a test
that did not would create a context of hundreds of MB on the GPU being measured.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from pytest_energy.meters.base import MeterError


def torch_uuid_oracle() -> Callable[[int], str | None] | None:
    """UUID of CUDA device ``i`` according to torch, if the test already imported torch.

    Used only to disambiguate FASTEST_FIRST ordering on mixed-GPU machines. Asking torch
    initialises its CUDA runtime (no device context), acceptable because torch is
    already in use by the test.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None

    def uuid_of(index: int) -> str | None:
        try:
            uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        except Exception:
            return None
        return None if uuid is None else str(uuid)

    return uuid_of


def _primary_context_probe(torch: Any) -> Callable[[int], Any] | None:
    """torch's "has this device a primary context?" check: private but long-standing;
    absent in CPU builds and stubs."""
    return getattr(getattr(torch, "_C", None), "_cuda_hasPrimaryContext", None)


def has_cuda_context(cuda_indices: list[int]) -> bool:
    """Whether this process holds a CUDA context on one of ``cuda_indices``, as far as
    torch (if the test imported it) can tell without creating one."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        cuda = getattr(torch, "cuda", None)
        if cuda is None or not cuda.is_initialized():
            return False
        has_context = _primary_context_probe(torch)
        if has_context is None:
            return False
        return any(bool(has_context(index)) for index in cuda_indices)
    except Exception:
        return False


def synchronize(cuda_indices: list[int]) -> None:
    """Wait for GPU work queued by torch or cupy on ``cuda_indices``.

    Kernels are launched asynchronously; without this, a window would close while the
    work it should contain is still running. torch is synchronised only if it
    initialised CUDA (otherwise it has queued nothing), and only on devices where it
    has a context, where torch can tell: syncing must not create one. cupy is
    synchronised on its current device if that device is measured.

    Raises:
        MeterError: the synchronisation failed (typically a CUDA error raised by the
            test's own kernels, which surfaces here).
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        _synchronize_torch(torch, cuda_indices)
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        _synchronize_cupy(cupy, cuda_indices)


def _synchronize_torch(torch: Any, cuda_indices: list[int]) -> None:
    try:
        cuda = getattr(torch, "cuda", None)
        if cuda is None or not cuda.is_available() or not cuda.is_initialized():
            return
        has_context = _primary_context_probe(torch)
        for index in cuda_indices:
            if has_context is None or has_context(index):
                cuda.synchronize(index)
    except Exception as exc:
        raise MeterError(f"torch.cuda.synchronize failed before reading NVML: {exc}") from exc


def _synchronize_cupy(cupy: Any, cuda_indices: list[int]) -> None:
    try:
        cupy_cuda = getattr(cupy, "cuda", None)
        if cupy_cuda is not None and cupy_cuda.is_available():
            current = int(cupy_cuda.runtime.getDevice())
            if current in cuda_indices:
                cupy_cuda.Device(current).synchronize()
    except Exception as exc:
        raise MeterError(f"cupy device synchronize failed before reading NVML: {exc}") from exc
