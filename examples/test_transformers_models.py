"""Energy budgets on Hugging Face transformers models: a BERT classifier and GPT-2 decoding.

An optional part of the examples (``pip install -e ".[examples,transformers]"``): without
`transformers` this module is skipped with the reason below, and the rest of
``pytest examples`` runs as before.

Both models are built from a config with random weights from a fixed seed: no weights,
no tokenizer, nothing is downloaded. They are tiny (2 layers, hidden size 64, a
1,000-token vocabulary), so the suite stays fast on a CPU; the budgets and the
items-per-call bookkeeping are what a full-size model's suite would use.

* `test_tiny_bert_classify`: sequence classification at batch 1, 8 and 32, with
  ``items=batch`` (energy per sample); the three share ``group="tiny-bert"``, so the run
  ends with a right-sizing table for them.
* `test_tiny_gpt2_generate`: greedy generation of `NEW_TOKENS` tokens, measured with the
  `energy` fixture, with ``items`` = generated tokens (energy per token).

Budgets sit about 5x above the median measured on the 2-core calibration box (1 torch
thread, `estimate` meter: joules = process CPU seconds x 10 W); the comments give what
was observed there. Calibrate again before relying on them on other hardware.
"""

from __future__ import annotations

import pytest

transformers = pytest.importorskip(
    "transformers",
    reason="optional example: needs transformers (pip install -e '.[examples,transformers]')",
)
import torch  # noqa: E402  (after the skip, so a missing transformers is named first)

SEED = 1234
VOCAB = 1000
SEQ_LEN = 32  # tokens per classified sequence
PROMPT_LEN = 8
NEW_TOKENS = 16  # tokens generated per sequence
NUM_LABELS = 3


def tiny_bert(device: torch.device) -> torch.nn.Module:
    """A 2-layer BERT sequence classifier (~0.14 M parameters) with random weights."""
    torch.manual_seed(SEED)
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=64, num_labels=NUM_LABELS)
    return transformers.BertForSequenceClassification(config).to(device).eval()


def tiny_gpt2(device: torch.device) -> torch.nn.Module:
    """A 2-layer GPT-2 language model (~0.17 M parameters) with random weights; token 0
    stands in for the special tokens a tokenizer would bring."""
    torch.manual_seed(SEED)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=2,
        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return transformers.GPT2LMHeadModel(config).to(device).eval()


def token_ids(batch: int, length: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Deterministic token ids in [1, VOCAB): input ids built directly, no tokenizer."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, VOCAB, (batch, length), generator=generator).to(device)


def classify(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Class probabilities for a batch of token ids (one inference call)."""
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        return torch.softmax(logits, dim=-1)


def generate(model: torch.nn.Module, prompt: torch.Tensor) -> torch.Tensor:
    """Greedy decoding of exactly `NEW_TOKENS` tokens after `prompt` (KV cache on).

    Each call starts from the prompt again, so repeated calls do the same work."""
    with torch.inference_mode():
        return model.generate(
            prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
            max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, pad_token_id=0)


@pytest.fixture(scope="module")
def bert(device):
    """The tiny BERT classifier on `device`, warmed up at every batch size used."""
    model = tiny_bert(device)
    for batch in (1, 8, 32):
        classify(model, token_ids(batch, SEQ_LEN, device))
    return model


@pytest.fixture(scope="module")
def gpt2(device):
    """The tiny GPT-2 on `device`, warmed up."""
    model = tiny_gpt2(device)
    generate(model, token_ids(1, PROMPT_LEN, device))
    return model


def bert_case(batch: int, joules: str, latency_ms: str, default: bool = False) -> object:
    """One batch size of the `tiny-bert` group; energy per item is energy per sample."""
    return pytest.param(
        batch,
        marks=pytest.mark.energy_budget(joules=joules, latency_ms=latency_ms, items=batch,
                                        group="tiny-bert", default=default),
        id=f"batch{batch}",
    )


BERT_CASES = [
    # observed: ~10 mJ est./call, median latency ~1.0 ms
    bert_case(1, joules="50 mJ", latency_ms="5 ms", default=True),
    # observed: ~17 mJ est./call, median latency ~1.7 ms
    bert_case(8, joules="90 mJ", latency_ms="9 ms"),
    # observed: ~35 mJ est./call, median latency ~3.5 ms
    bert_case(32, joules="175 mJ", latency_ms="18 ms"),
]


#: The 32 sequences every variant classifies the first `batch` of (the same job).
MAX_BATCH = 32


@pytest.fixture(scope="module")
def all_sequences(device):
    """`MAX_BATCH` sequences of `SEQ_LEN` token ids, built outside the measured calls."""
    return token_ids(MAX_BATCH, SEQ_LEN, device)


@pytest.fixture(scope="module")
def reference(bert, all_sequences):
    """Their class probabilities, classified one sequence at a time (not measured)."""
    return torch.cat([classify(bert, all_sequences[i:i + 1]) for i in range(MAX_BATCH)])


@pytest.mark.parametrize("batch", BERT_CASES)
def test_tiny_bert_classify(bert, all_sequences, reference, batch):
    """Marker only: the whole body (one forward pass + asserts) is measured."""
    probs = classify(bert, all_sequences[:batch])
    assert probs.shape == (batch, NUM_LABELS)
    # Same job at every batch size: the probabilities of one sequence at a time.
    assert torch.allclose(probs, reference[:batch], atol=1e-4)


# observed for the measured call: ~200 mJ est./call (~12 mJ per token), median
# latency ~20 ms
@pytest.mark.energy_budget(joules="1 J", latency_ms="100 ms", items=NEW_TOKENS,
                           joules_per_item="60 mJ")
def test_tiny_gpt2_generate(gpt2, device, energy):
    """The `energy` fixture around `generate` only; items = generated tokens, so
    `joules_per_item` is the energy per token (the marker's per-token budget applies)."""
    prompt = token_ids(1, PROMPT_LEN, device, seed=7)  # not measured

    out = energy(generate, gpt2, prompt)  # measured: warmup + rounds calls

    assert out.shape == (1, PROMPT_LEN + NEW_TOKENS)
    assert torch.equal(out[:, :PROMPT_LEN], prompt)  # the prompt is kept, tokens appended
    result = energy.result
    assert result.joules_per_item == pytest.approx(result.joules_per_call / NEW_TOKENS)
