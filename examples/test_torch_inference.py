"""Energy and latency budgets on PyTorch inference.

Budgets are per call of the test body (or of what the `energy` fixture measured)
and sit ~5x above the median of what the calibration box measured: a 2-core CPU,
1 torch thread, the `estimate` meter (joules = process CPU seconds x 10 W). The
"observed" comments give the range over 15 runs of `pytest examples/` there
(5 of them with the other core busy).
"""

from __future__ import annotations

import pytest
import torch
from models import NUM_CLASSES, make_batch, predict


def torch_case(batch: int, joules: str, latency_ms: str) -> object:
    return pytest.param(
        batch,
        marks=pytest.mark.energy_budget(
            joules=joules, latency_ms=latency_ms, items=batch, group="torch-mlp"
        ),
        id=f"batch{batch}",
    )


TORCH_CASES = [
    # observed: 1.9-4.5 mJ est./call (median 3.0), median latency 0.19-0.51 ms (median 0.28)
    torch_case(1, joules="15 mJ", latency_ms="1.5 ms"),
    # observed: 3.1-6.0 mJ est./call (median 4.0), median latency 0.30-0.60 ms (median 0.39)
    torch_case(8, joules="20 mJ", latency_ms="2 ms"),
    # observed: 5.4-8.6 mJ est./call (median 6.0), median latency 0.52-0.87 ms (median 0.59)
    torch_case(32, joules="30 mJ", latency_ms="3 ms"),
]


@pytest.fixture
def x(batch, device):
    """The input batch, built outside the measured calls."""
    return make_batch(batch, device=device)


@pytest.mark.parametrize("batch", TORCH_CASES)
def test_torch_mlp_predict(torch_model, x, batch):
    """Marker only: the whole body (one forward pass + asserts) is measured."""
    probs = predict(torch_model, x)
    assert probs.shape == (batch, NUM_CLASSES)
    assert torch.isfinite(probs).all()
    assert torch.allclose(probs.sum(dim=-1), torch.ones(batch, device=probs.device), atol=1e-5)


# observed for the measured call: 4.5-6.9 mJ est./call (median 5.0, i.e. 0.16 mJ/item),
# median latency 0.43-0.68 ms (median 0.49)
@pytest.mark.energy_budget(joules="25 mJ", latency_ms="2.5 ms", items=32, group="torch-mlp")
def test_torch_energy_fixture(torch_model, device, energy):
    """The `energy` fixture: only the model call is measured, not the set-up or the checks."""
    x = make_batch(32, seed=7, device=device)  # fresh input, not measured

    probs = energy(predict, torch_model, x)  # measured: warmup + rounds calls

    result = energy.result
    assert result.calls >= 1
    assert result.joules_per_item == pytest.approx(result.joules_per_call / 32)
    assert result.joules_per_item < 1e-3  # under 1 mJ per item
    assert result.latency_ms["median"] <= result.latency_ms["p95"]
    assert probs.shape == (32, NUM_CLASSES)
    assert (probs.argmax(dim=-1) < NUM_CLASSES).all()


@pytest.fixture
def heavy_batch():
    return make_batch(256, seed=11, device="cpu")


# observed: 24-47 mJ est./call (median 28): a 1 mJ budget can never be met.
@pytest.mark.xfail(strict=True, reason="demonstrates a failing energy budget")
@pytest.mark.energy_budget(joules="1 mJ", items=256, device="cpu")
def test_torch_batch256_over_budget(cpu_model, heavy_batch):
    """A batch-256 forward pass on CPU against an impossible 1 mJ-per-call budget."""
    probs = predict(cpu_model, heavy_batch)
    assert probs.shape == (256, NUM_CLASSES)
