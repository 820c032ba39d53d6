"""Energy and latency budgets on ONNX Runtime inference of the same model.

The session (see conftest.py / models.py) uses 1 intra-op thread with thread
spinning off. Budgets sit ~5x above the median of what the calibration box
measured (2-core CPU, `estimate` meter: joules = process CPU seconds x 10 W); the
"observed" comments give the range over 15 runs of `pytest examples/` there
(5 of them with the other core busy).
"""

from __future__ import annotations

import numpy as np
import pytest
from models import INPUT_NAME, NUM_CLASSES, OUTPUT_NAME, make_batch, predict


def onnx_case(batch: int, joules: str, latency_ms: str) -> object:
    return pytest.param(
        batch,
        marks=pytest.mark.energy_budget(
            joules=joules, latency_ms=latency_ms, items=batch, group="onnx-mlp"
        ),
        id=f"batch{batch}",
    )


ONNX_CASES = [
    # observed: 1.1-2.1 mJ est./call (median 1.5), median latency 0.10-0.21 ms (median 0.15)
    onnx_case(1, joules="8 mJ", latency_ms="750 us"),
    # observed: 1.6-3.0 mJ est./call (median 2.3), median latency 0.15-0.29 ms (median 0.21)
    onnx_case(8, joules="12 mJ", latency_ms="1 ms"),
    # observed: 3.7-11.5 mJ est./call (median 4.7), median latency 0.35-0.77 ms (median 0.47)
    onnx_case(32, joules="25 mJ", latency_ms="2.5 ms"),
]


@pytest.fixture
def features(batch):
    """The input batch as a numpy array, built outside the measured calls."""
    return make_batch(batch, device="cpu").numpy()


@pytest.mark.parametrize("batch", ONNX_CASES)
def test_onnx_mlp_predict(ort_session, features, batch):
    """Marker only: the whole body (one session.run + asserts) is measured."""
    (probs,) = ort_session.run([OUTPUT_NAME], {INPUT_NAME: features})
    assert probs.shape == (batch, NUM_CLASSES)
    assert np.isfinite(probs).all()
    assert np.allclose(probs.sum(axis=-1), 1.0, atol=1e-5)


# observed for the measured block: 3.4-5.3 mJ est. (median 4.5), latency 0.33-0.52 ms.
# One block is one sample, hence the wider latency margin.
@pytest.mark.energy_budget(joules="25 mJ", latency_ms="5 ms", group="onnx-mlp")
def test_onnx_matches_torch(ort_session, torch_model, device, energy):
    """`energy.measure()` around one block: the ONNX call is measured, the reference is not."""
    x = make_batch(32, seed=3, device="cpu")
    feed = {INPUT_NAME: x.numpy()}

    with energy.measure(items=32):
        (probs,) = ort_session.run([OUTPUT_NAME], feed)

    # The reference is computed after the block on purpose: CPU time that torch burns
    # just before a block (e.g. OpenMP workers still spinning, with >1 thread) would be
    # counted in it by a process-CPU-time meter.
    expected = predict(torch_model, x.to(device)).cpu().numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-4, rtol=0)
    assert energy.result.joules_per_item == pytest.approx(energy.result.joules_per_call / 32)
