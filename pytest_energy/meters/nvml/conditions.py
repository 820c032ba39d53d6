"""What makes an NVML reading less than clean right now: the meter's ``conditions()``.

Energy counters measure a whole GPU, so anything else running on it is counted too.
The measuring code asks right before each measured run; each flag starts with a
keyword the report and the verdict act on:

* ``contaminated:`` other processes hold a compute context on the GPU. Our own pid is
  excluded, and so are this session's own xdist workers while they are blocked waiting
  for the device lock we hold (idle there; found from the kernel's lock table and the
  process tree, see :func:`~pytest_energy.meters.locks.idle_session_peers`, never from
  a file any process could write). A worker running an unmeasured test, or one that
  merely keeps a CUDA context, counts: it may be using the GPU. If NVML lists pids but
  not ours while this process holds a CUDA context there (torch tells), NVML speaks
  another pid namespace (a container) or MPS; one of the pids is then taken to be us.
  Without torch we cannot tell, and every listed pid counts as other. A NotSupported
  answer gives no flag (nothing can be known; NVML does not list processes everywhere,
  e.g. on some virtual GPUs); any other error gives an ``unknown:`` flag.
* ``display:`` graphics processes (a desktop, a compositor) on the GPU. Not
  contamination: their steady draw is part of what the GPU burns when idle, and on a
  workstation they are always there.
* ``shared:`` the GPU is partitioned with MIG; energy is for the whole GPU.
* ``module-scope:`` Grace Hopper (name with GH200 or Grace) reports the power of the
  whole module, CPU and memory included.
* ``sampled:`` energy is integrated from sampled power (no energy counter).
"""

from __future__ import annotations

import os
import re
from typing import Any

from pytest_energy.meters.locks import idle_session_peers
from pytest_energy.meters.nvml.bindings import UNSUPPORTED, nvml_reason
from pytest_energy.meters.nvml.devices import MeasuredGpu
from pytest_energy.meters.nvml.frameworks import has_cuda_context
from pytest_energy.meters.nvml.sampler import SAMPLE_PERIOD_S, SOURCE_AVERAGE

_MODULE_SCOPE = re.compile(r"GH200|Grace", re.IGNORECASE)
_MAX_LISTED_PIDS = 10
_PROCESS_LISTS = (
    ("compute", "nvmlDeviceGetComputeRunningProcesses"),
    ("graphics", "nvmlDeviceGetGraphicsRunningProcesses"),
)


def gpu_conditions(nvml: Any, gpus: list[MeasuredGpu]) -> list[str]:
    """The flags of every measured GPU (see the module docstring)."""
    flags: list[str] = []
    for gpu in gpus:
        flags.extend(_process_flags(nvml, gpu))
        if gpu.shared or gpu.info.mig_enabled:
            flags.append(
                f"shared: {gpu.domain} is partitioned with MIG; energy is for the whole GPU"
            )
        if _MODULE_SCOPE.search(gpu.info.name):
            flags.append(
                f"module-scope: {gpu.domain} ({gpu.info.name}) reports module power "
                "(CPU+GPU)"
            )
        if gpu.track is not None:
            flags.append(_sampled_flag(gpu))
    return flags


def _sampled_flag(gpu: MeasuredGpu) -> str:
    period = f"{SAMPLE_PERIOD_S * 1e3:g} ms"
    if gpu.track is not None and gpu.track.api == "field":
        how = f"instant power (NVML_FI_DEV_POWER_INSTANT) polled every {period}"
    else:
        how = f"nvmlDeviceGetPowerUsage polled every {period}"
    text = (
        f"sampled: {gpu.domain} ({gpu.info.name}) has no energy counter; energy is "
        f"integrated from {how}"
    )
    if gpu.source == SOURCE_AVERAGE:
        text += (
            "; on this GPU that reading is a 1 s average, so windows shorter than a "
            "few seconds are smeared"
        )
    return text


def _process_flags(nvml: Any, gpu: MeasuredGpu) -> list[str]:
    """``contaminated:`` / ``display:`` / ``unknown:`` flags for one GPU."""
    found = _running_pids(nvml, gpu)
    if isinstance(found, str):
        return [found]
    own = os.getpid()
    flags = _compute_flags(gpu, found.get("compute", []), own)
    graphics = [pid for pid in found.get("graphics", []) if pid != own]
    if graphics:
        flags.append(
            f"display: {_plural(len(graphics), 'graphics process')} on {gpu.domain} "
            f"({_pids_word(graphics)} {_pid_list(graphics)}); their "
            "steady draw counts as idle power"
        )
    return flags


def _running_pids(nvml: Any, gpu: MeasuredGpu) -> dict[str, list[int]] | str:
    """Pids per process kind NVML lists on ``gpu``, or an ``unknown:`` flag."""
    found: dict[str, list[int]] = {}
    for kind, function in _PROCESS_LISTS:
        try:
            processes = getattr(nvml, function)(gpu.handle)
        except nvml.NVMLError as exc:
            if type(exc).__name__ in UNSUPPORTED:
                continue
            return (
                f"unknown: cannot list the {kind} processes on {gpu.domain}: "
                f"{nvml_reason(exc)}"
            )
        except AttributeError:  # bindings too old to have the function
            continue
        found[kind] = sorted({int(p.pid) for p in processes if getattr(p, "pid", None)})
    return found


def _compute_flags(gpu: MeasuredGpu, listed: list[int], own: int) -> list[str]:
    """The ``contaminated:`` flag for the compute pids NVML lists, if any."""
    if not listed:
        return []
    # This session's xdist workers blocked on the device lock we hold are idle here.
    peers = idle_session_peers(listed)
    compute = [pid for pid in listed if pid not in peers]
    if compute and own not in compute and has_cuda_context(gpu.cuda_indices):
        return _foreign_namespace_flag(gpu, compute, own)
    others = [pid for pid in compute if pid != own]
    if not others:
        return []
    return [
        f"contaminated: {_plural(len(others), 'other compute process')} on "
        f"{gpu.domain} ({_pids_word(others)} {_pid_list(others)})"
    ]


def _foreign_namespace_flag(gpu: MeasuredGpu, compute: list[int], own: int) -> list[str]:
    """NVML lists pids but not ours although we hold a context: it speaks another pid
    namespace (a container) or MPS, so one of the pids is taken to be this process."""
    if len(compute) < 2:
        return []
    return [
        f"contaminated: {_plural(len(compute) - 1, 'other compute process')} on "
        f"{gpu.domain} (NVML lists pids {_pid_list(compute)}; this "
        f"process, pid {own}, is not among them, as in a container's pid "
        "namespace or under MPS, so one of them is taken to be this process)"
    ]


def _plural(count: int, word: str, suffix: str = "es") -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}{suffix}"


def _pids_word(pids: list[int]) -> str:
    return "pid" if len(pids) == 1 else "pids"


def _pid_list(pids: list[int]) -> str:
    shown = ", ".join(str(pid) for pid in pids[:_MAX_LISTED_PIDS])
    more = len(pids) - _MAX_LISTED_PIDS
    return f"{shown}, ... ({more} more)" if more > 0 else shown
