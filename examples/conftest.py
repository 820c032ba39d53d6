"""Session-scoped fixtures for the pytest-energy examples.

Everything expensive -- building the model, exporting it to ONNX, creating the
ONNX Runtime session, warming both up -- happens here, once per session, so none
of it lands inside a measured call.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Make `import models` work under any --import-mode (importlib does not touch sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parent))

import models

# Size torch's thread pools before anything runs on them (1 thread: see models.NUM_THREADS).
models.configure_threads()

# Batch sizes the session fixtures warm up, so no measured call pays first-call costs.
WARM_BATCHES = (1, 8, 32, 256)


@pytest.fixture(scope="session")
def device():
    """Where the PyTorch examples run: CUDA when available, else CPU."""
    return models.torch_device()


@pytest.fixture(scope="session")
def torch_model(device):
    """The seeded MLP classifier on `device`, warmed up."""
    model = models.build_model(device=device)
    for b in WARM_BATCHES:
        models.predict(model, models.make_batch(b, device=device))
    return model


@pytest.fixture(scope="session")
def cpu_model(device, torch_model):
    """The same network (same seed, same weights), always on CPU."""
    if device.type == "cpu":
        return torch_model
    model = models.build_model(device="cpu")
    for b in WARM_BATCHES:
        models.predict(model, models.make_batch(b, device="cpu"))
    return model


@pytest.fixture(scope="session")
def onnx_path(torch_model, tmp_path_factory):
    """The model exported to ONNX in a session temp directory."""
    return models.export_onnx(torch_model, tmp_path_factory.mktemp("onnx"))


def _warm(session):
    for b in WARM_BATCHES:
        feed = {models.INPUT_NAME: models.make_batch(b, device="cpu").numpy()}
        session.run([models.OUTPUT_NAME], feed)
    return session


@pytest.fixture(scope="session")
def ort_session(onnx_path):
    """An ONNX Runtime session for `onnx_path` (CUDA provider if installed), warmed up."""
    return _warm(models.make_ort_session(onnx_path))


@pytest.fixture(scope="session")
def ort_int8_session(onnx_path, tmp_path_factory):
    """The same model dynamically quantized to int8, on ONNX Runtime's CPU provider."""
    int8_path = models.quantize_int8(onnx_path, tmp_path_factory.mktemp("onnx-int8"))
    return _warm(models.make_ort_session(int8_path, cpu_only=True))
