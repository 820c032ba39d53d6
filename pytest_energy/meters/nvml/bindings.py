"""The thin layer over the ``pynvml`` bindings that every NVML module shares.

Kept apart so that the sampler, the device discovery and the meter all turn NVML
errors into the same actionable text, and so that ``pynvml`` is imported in exactly
one place, lazily: importing the plugin must work on machines without the package or
an NVIDIA driver.
"""

from __future__ import annotations

from typing import Any

from pytest_energy.meters.base import MeterUnavailable

_FRIENDLY_ERRORS = {
    "NVMLError_LibraryNotFound": "NVIDIA driver library not found",
    "NVMLError_DriverNotLoaded": "NVIDIA driver not loaded",
    "NVMLError_NoPermission": "insufficient permissions to use NVML",
    "NVMLError_LibRmVersionMismatch": (
        "NVML library and kernel driver versions differ (reboot or reload the driver)"
    ),
    "NVMLError_GpuIsLost": "the GPU fell off the bus or is otherwise lost",
    "NVMLError_Uninitialized": "NVML is not initialised",
}

UNSUPPORTED = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound")
"""NVML's answers for "this GPU has no such reading"; other errors are real failures."""

_FIELD_MEMBERS = {
    "NVML_VALUE_TYPE_DOUBLE": "dVal",
    "NVML_VALUE_TYPE_UNSIGNED_INT": "uiVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG": "ulVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG": "ullVal",
    "NVML_VALUE_TYPE_SIGNED_LONG_LONG": "sllVal",
    "NVML_VALUE_TYPE_SIGNED_INT": "siVal",
    "NVML_VALUE_TYPE_UNSIGNED_SHORT": "usVal",
}


def load_pynvml() -> Any:
    """Import and initialise ``pynvml``, or say why NVML cannot be used here.

    The import is deferred to this call (an optional dependency that loads a native
    library) so that merely importing the meter costs nothing.
    """
    try:
        import pynvml
    except ImportError as exc:
        raise MeterUnavailable(
            "NVML unavailable: the pynvml module is not installed "
            f"(pip install nvidia-ml-py): {exc}"
        ) from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise MeterUnavailable(f"NVML unavailable: {nvml_reason(exc)}") from None
    except OSError as exc:
        raise MeterUnavailable(f"NVML unavailable: cannot load the library: {exc}") from None
    return pynvml


def nvml_reason(exc: BaseException) -> str:
    """``"<what it means> (<NVMLError class>)"`` for messages users can act on."""
    cls = type(exc).__name__
    text = _FRIENDLY_ERRORS.get(cls) or str(exc) or cls
    return f"{text} ({cls})"


def sample_reason(exc: BaseException) -> str:
    """Why a power sample failed: NVML errors explained, anything else as is."""
    if type(exc).__name__.startswith("NVMLError"):
        return nvml_reason(exc)
    return f"{type(exc).__name__}: {exc}"


def text(value: Any) -> str:
    """NVML strings: ``str`` in current bindings, ``bytes`` in old ones and PCI structs."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def field_number(nvml: Any, field_value: Any) -> float:
    """The number in an ``nvmlFieldValue_t``, read through the member its type names."""
    value_type = int(field_value.valueType)
    for constant, member in _FIELD_MEMBERS.items():
        if getattr(nvml, constant, None) == value_type:
            return float(getattr(field_value.value, member))
    raise ValueError(f"unknown NVML value type {value_type}")


def instant_power_field(nvml: Any, handle: Any) -> Any:
    """The ``NVML_FI_DEV_POWER_INSTANT`` field value of ``handle``; raises the NVML
    error the field carries (field values report failures per field, not by raising)."""
    field_value = nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT])[0]
    code = int(field_value.nvmlReturn)
    if code != nvml.NVML_SUCCESS:
        raise nvml.NVMLError(code)
    return field_value
