"""Pure parts of K-Reduce: the flat vector, chunking, weighted merge, merged-chunk encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fasdl.kreduce.protocol import decode_merged, encode_merged, merge_weights, weighted_sum
from fasdl.training import ModelVector, chunk_bounds


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    )


def test_vector_is_the_model_and_follows_training_in_place() -> None:
    model = _net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    vec = ModelVector.attach(model)
    # values unchanged by attaching; parameters and float buffers (BatchNorm stats) included
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    n_params = sum(p.numel() for p in model.parameters())
    assert vec.numel == n_params + 4 + 4  # running_mean + running_var
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    snapshot = vec.numpy().copy()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    # the step and the BatchNorm update wrote into the vector without any copy
    assert not np.array_equal(snapshot, vec.numpy())
    flat_again = torch.cat(
        [t.reshape(-1) for t in [*model.parameters(), model[1].running_mean, model[1].running_var]]
    )
    assert torch.equal(flat_again, vec.flat)


def test_load_overwrites_model() -> None:
    model = _net()
    vec = ModelVector.attach(model)
    values = np.arange(vec.numel, dtype=np.float32)
    vec.load(values)
    assert model[0].weight.flatten()[0].item() == 0.0
    assert torch.equal(
        model[3].bias, torch.from_numpy(values[vec.slots[5].offset : vec.slots[5].offset + 3])
    )
    with pytest.raises(ValueError):
        vec.load(values[:-1])


@pytest.mark.parametrize(("n", "k"), [(10, 1), (10, 3), (11_200_000, 8), (7, 7)])
def test_chunks_are_balanced_and_cover(n: int, k: int) -> None:
    b = chunk_bounds(n, k)
    assert b[0][0] == 0 and b[-1][1] == n
    assert all(b[i][1] == b[i + 1][0] for i in range(k - 1))
    sizes = [e - s for s, e in b]
    assert max(sizes) - min(sizes) <= 1


def test_chunks_reject_more_chunks_than_floats() -> None:
    with pytest.raises(ValueError):
        chunk_bounds(3, 4)


def test_weighted_merge_is_batch_weighted_mean() -> None:
    rng = np.random.default_rng(1)
    parts = [rng.standard_normal(100).astype(np.float32) for _ in range(3)]
    w = merge_weights([64, 32, 32], "batch")
    np.testing.assert_allclose(w, [0.5, 0.25, 0.25])
    expected = 0.5 * parts[0] + 0.25 * parts[1] + 0.25 * parts[2]
    np.testing.assert_allclose(weighted_sum(parts, w), expected, rtol=1e-6)


def test_merged_chunk_round_trip() -> None:
    v = np.linspace(0, 1, 17, dtype=np.float32)
    it, stop, back = decode_merged(encode_merged(12, 14, v))
    assert (it, stop) == (12, 14)
    np.testing.assert_array_equal(back, v)
    with pytest.raises(ValueError):
        decode_merged(b"XXXX" + bytes(20))
