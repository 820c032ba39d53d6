"""Small, self-contained models for the pytest-energy examples.

Nothing here downloads weights: the model is built in code from a fixed seed, so
every run (and every machine) measures the same network.

* :func:`build_model` -- a 3-layer MLP classifier (256 -> 512 -> 512 -> 10, ~0.4 M
  parameters, ~1.6 MB of float32 weights) whose forward returns class
  probabilities (softmax included, so the output rows sum to 1).
* :func:`predict` -- one inference call under ``torch.inference_mode()``, in fp32 or
  under autocast to a lower precision (bf16 on CPU, fp16 on CUDA).
* :func:`make_batch` -- a deterministic input batch.
* :func:`export_onnx` -- writes the model to ``<directory>/mlp.onnx`` with a dynamic
  batch dimension.
* :func:`make_ort_session` -- an ONNX Runtime session on CUDA when the installed
  onnxruntime has the CUDA provider, else on CPU.
* :func:`quantize_int8` -- a dynamically quantized (int8 weights) copy of the ONNX
  model, for ONNX Runtime's CPU provider.

This module is a helper, not a test file; ``conftest.py`` wraps it in
session-scoped fixtures so that building and exporting are never measured.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from torch import nn

SEED = 1234
IN_FEATURES = 256
HIDDEN = 512
NUM_CLASSES = 10
INPUT_NAME = "features"
OUTPUT_NAME = "probs"

#: Intra-op threads for torch and ONNX Runtime. One, on purpose: on the 2-core
#: calibration box a second thread saved little or no time at batch <= 32 but added
#: up to 90 % CPU time (= energy), and when another process competes for the cores (a
#: parallel test run, pytest-xdist -n 2) torch's OpenMP workers spin-wait for each
#: other and a 0.4 ms call turned into 30 ms of burnt CPU.
NUM_THREADS = 1


def configure_threads(num_threads: int = NUM_THREADS) -> None:
    """Pin torch's intra-op thread pool; call once, before any inference."""
    torch.set_num_threads(num_threads)
    # The inter-op pool can only be sized before first use; ignore if too late.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def torch_device() -> torch.device:
    """CUDA when torch can see a GPU, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class MLPClassifier(nn.Module):
    """256 -> 512 -> 512 -> 10 MLP that returns softmax probabilities."""

    def __init__(
        self,
        in_features: int = IN_FEATURES,
        hidden: int = HIDDEN,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=-1)


def build_model(seed: int = SEED, device: torch.device | str | None = None) -> MLPClassifier:
    """Build the classifier with weights drawn from a fixed seed, in eval mode."""
    torch.manual_seed(seed)
    model = MLPClassifier().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device if device is not None else torch_device())


def low_precision(device: torch.device | str | None = None) -> str:
    """The lower precision the torch examples compare with fp32 on ``device``.

    The dtype ``torch.autocast`` defaults to on each device type: bf16 on CPU, fp16 on
    CUDA (fast on every GPU with tensor cores; bf16 would need Ampere or newer).
    """
    device = torch.device(device) if device is not None else torch_device()
    return "fp16" if device.type == "cuda" else "bf16"


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """One inference call: float32 class probabilities for ``x`` (no autograd bookkeeping).

    ``precision`` "fp32" runs the model as built; "bf16" / "fp16" run it under
    ``torch.autocast`` (matmuls in the lower precision, weights stay fp32), and the
    probabilities come back as float32 either way, so callers compare like with like.
    """
    if precision == "fp32":
        return model(x)
    if precision not in _AUTOCAST_DTYPES:
        raise ValueError(f"precision={precision!r}: expected fp32, bf16 or fp16")
    with torch.autocast(device_type=x.device.type, dtype=_AUTOCAST_DTYPES[precision]):
        probs = model(x)
    return probs.float()


def make_batch(batch: int, seed: int = 0, device: torch.device | str | None = None) -> torch.Tensor:
    """A deterministic ``(batch, IN_FEATURES)`` float32 input batch."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, IN_FEATURES, generator=gen, dtype=torch.float32)
    return x.to(device if device is not None else torch_device())


def export_onnx(model: nn.Module, directory: str | os.PathLike[str]) -> Path:
    """Export ``model`` to ``<directory>/mlp.onnx`` (opset 17, dynamic batch).

    Uses the TorchScript-based exporter (``dynamo=False``): torch >= 2.9 defaults
    to the ``torch.export`` exporter, which additionally needs the ``onnxscript``
    package. The TorchScript path needs only ``torch`` and ``onnx``; it warns that
    it is deprecated, which is silenced here.
    """
    path = Path(directory) / "mlp.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Export from a CPU copy: the caller's model stays where it is (possibly CUDA).
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    example = make_batch(2, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            cpu_model,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=17,
        )
    onnx.checker.check_model(str(path))
    return path


def ort_providers() -> list[str]:
    """CUDA execution provider first when this onnxruntime build has it."""
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def quantize_int8(path: str | os.PathLike[str], directory: str | os.PathLike[str]) -> Path:
    """Write a dynamically quantized copy of the ONNX model at ``path`` to ``directory``.

    ``onnxruntime.quantization.quantize_dynamic``: weights stored as int8, activations
    quantized on the fly per call; no calibration data needed. Runs on ONNX Runtime's
    CPU provider (the integer MatMul kernels are CPU kernels), hence
    :func:`make_ort_session` with ``cpu_only=True`` for it.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = Path(directory) / "mlp_int8.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    # quantize_dynamic logs a "consider pre-processing" warning on every call; the MLP
    # needs no shape inference pre-pass.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(path), str(target), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    onnx.checker.check_model(str(target))
    return target


def make_ort_session(
    path: str | os.PathLike[str], num_threads: int = NUM_THREADS, cpu_only: bool = False
) -> ort.InferenceSession:
    """An ``onnxruntime.InferenceSession`` tuned for energy measurement.

    * ``num_threads`` intra-op threads (1 by default, see :data:`NUM_THREADS`),
      one inter-op thread, sequential execution;
    * thread spinning off: by default ORT's idle pool threads busy-wait between
      ops, which burns CPU time that the energy meter rightly counts (this only
      matters with ``num_threads > 1``).
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only
    providers = ["CPUExecutionProvider"] if cpu_only else ort_providers()
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
