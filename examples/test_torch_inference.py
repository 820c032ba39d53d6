"""Energy and latency budgets on PyTorch inference.

Budgets are per call of the test body (or of what the `energy` fixture measured)
and sit ~5x above the median of what the calibration box measured: a 2-core CPU,
1 torch thread, the `estimate` meter (joules = process CPU seconds x 10 W). The
"observed" comments give the range over 15 runs of `pytest examples/` there
(5 of them with the other core busy).

`test_torch_mlp_predict` runs the same job at batch 1, 8 and 32, in fp32 and in a
lower precision (bf16 autocast on CPU, fp16 on CUDA). All six variants share
`group="torch-mlp"`, so the run ends with a right-sizing table: each variant's energy
per item, latency and budgets, and the variant that does the job for the least energy
per item within its latency budget.
"""

from __future__ import annotations

import pytest
import torch
from models import NUM_CLASSES, low_precision, make_batch, predict

#: The precision compared with fp32: bf16 autocast on CPU, fp16 autocast on CUDA.
LOW = low_precision()
#: Largest difference from the fp32 probabilities that still does "the same job".
TOLERANCE = {"fp32": 1e-5, "bf16": 1e-2, "fp16": 1e-2}


def torch_case(batch: int, precision: str, joules: str, latency_ms: str,
               default: bool = False) -> object:
    """One variant of the `torch-mlp` group: a batch size and a precision.

    All variants share `group="torch-mlp"`, so the run ends with a right-sizing table
    comparing their energy per item (`items=batch`); `default=True` marks the variant
    deployed today (one request at a time, in fp32), which the table's saving is
    measured against.
    """
    return pytest.param(
        batch,
        precision,
        marks=pytest.mark.energy_budget(
            joules=joules, latency_ms=latency_ms, items=batch, group="torch-mlp",
            default=default,
        ),
        id=f"batch{batch}-{precision}",
    )


# Observed on the calibration box (15 runs, 5 with the other core busy), est. = estimate
# meter. The fp32 budgets date from an earlier calibration, when the same calls cost
# up to 2x more on the same box: they now sit 5-10x above the median. The bf16 rows show
# what autocast costs on a CPU without native bf16 instructions (AVX2 only): 2-7x more
# energy per item than fp32, so the right-sizing table recommends fp32 there.
TORCH_CASES = [
    # observed: 1.4-3.1 mJ est./call (median 1.55), median latency 0.13-0.27 ms (median 0.14)
    torch_case(1, "fp32", joules="15 mJ", latency_ms="1.5 ms", default=True),
    # observed (bf16): 2.8-5.4 mJ est./call (median 3.0), latency 0.27-0.51 ms (median 0.28)
    torch_case(1, LOW, joules="20 mJ", latency_ms="2 ms"),
    # observed: 2.5-4.3 mJ est./call (median 3.0), median latency 0.24-0.42 ms (median 0.26)
    torch_case(8, "fp32", joules="20 mJ", latency_ms="2 ms"),
    # observed (bf16): 9.0-14.3 mJ est./call (median 11.6), latency 0.88-1.33 ms (median 1.18)
    torch_case(8, LOW, joules="60 mJ", latency_ms="6 ms"),
    # observed: 4.7-7.3 mJ est./call (median 5.7), median latency 0.46-0.74 ms (median 0.53)
    torch_case(32, "fp32", joules="30 mJ", latency_ms="3 ms"),
    # observed (bf16): 31-41 mJ est./call (median 34.5), latency 3.1-4.1 ms (median 3.35)
    torch_case(32, LOW, joules="175 mJ", latency_ms="17 ms"),
]


@pytest.fixture
def x(batch, device):
    """The input batch, built outside the measured calls."""
    return make_batch(batch, device=device)


@pytest.fixture
def reference(torch_model, x):
    """fp32 probabilities for `x`, computed outside the measured calls."""
    return predict(torch_model, x)


@pytest.mark.parametrize(("batch", "precision"), TORCH_CASES)
def test_torch_mlp_predict(torch_model, x, reference, batch, precision):
    """Marker only: the whole body (one forward pass + asserts) is measured."""
    probs = predict(torch_model, x, precision)
    assert probs.shape == (batch, NUM_CLASSES)
    assert torch.isfinite(probs).all()
    # Same job as fp32: the probabilities agree to within the precision's tolerance.
    assert (probs - reference).abs().max().item() <= TOLERANCE[precision]


# observed for the measured call: 4.5-6.9 mJ est./call (median 5.0, i.e. 0.16 mJ/item),
# median latency 0.43-0.68 ms (median 0.49)
# Not in the `torch-mlp` group: it measures only the model call, while the variants
# above measure their whole body, so its energy per item is not comparable with theirs.
@pytest.mark.energy_budget(joules="25 mJ", latency_ms="2.5 ms", items=32)
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
