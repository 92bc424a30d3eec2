"""The GPT of task=lm (xent.models.gpt) against checks that do not trust its code."""

from __future__ import annotations

import math

import pytest
import torch

from xent.models.gpt import GPT, sample


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: a second intra-op thread only spins (30x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**kwargs) -> GPT:
    torch.manual_seed(0)
    return GPT(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16, **kwargs).eval()


def test_a_later_token_never_changes_earlier_hidden_states():
    net = tiny()
    ids = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 11
    with torch.no_grad():
        before, after = net(ids), net(changed)
    assert before.shape == (3, 12, 16)
    torch.testing.assert_close(before[:, :7], after[:, :7], rtol=0, atol=0)
    assert (before[:, 7:] - after[:, 7:]).abs().amax(-1).min() > 1e-4


@pytest.mark.parametrize("bias", [False, True])
def test_parameter_count_is_nanogpts(bias):
    """Embedding V·d (tied head: counted once) + per block 12d² (+ 9d biases: qkv 3d, proj d,
    fc 4d, proj d) + 2 LayerNorms, + the final LayerNorm; the position embedding is left out."""
    net, d, v, layers = tiny(bias=bias), 16, 11, 2
    norm = 2 * d if bias else d
    per_block = 12 * d * d + (9 * d if bias else 0) + 2 * norm
    assert net.n_params() == v * d + layers * per_block + norm
    total = sum(p.numel() for p in net.parameters())
    assert total - net.n_params() == 16 * d  # block_size x n_embd
    assert net.head_weight is net.wte.weight


def test_init_is_gpt2s():
    torch.manual_seed(0)
    net = GPT(vocab_size=512, block_size=64, n_layer=4, n_head=4, n_embd=256)
    assert net.wte.weight.std().item() == pytest.approx(0.02, rel=0.02)
    proj = net.blocks[0].mlp.proj.weight
    assert proj.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.02)
    assert net.blocks[0].mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.02)


def test_logits_are_the_hidden_states_times_the_tied_embedding():
    net = tiny()
    ids = torch.arange(10)[None] % 11
    with torch.no_grad():
        torch.testing.assert_close(net.logits(ids), net(ids) @ net.wte.weight.T)


def test_sampling_is_fixed_by_its_generator_and_crops_the_context():
    net = tiny()
    draws = [
        sample(net, [1, 2], 30, temperature=0.8, generator=torch.Generator().manual_seed(5))
        for _ in range(2)
    ]
    assert draws[0] == draws[1] and len(draws[0]) == 30  # 32 tokens > block_size 16: cropped
    assert all(0 <= t < 11 for t in draws[0])


def test_a_longer_sequence_than_the_context_fails_in_one_line():
    with pytest.raises(ValueError, match="a sequence of 17 tokens is longer than block_size=16"):
        tiny()(torch.zeros(1, 17, dtype=torch.long))
