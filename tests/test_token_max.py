"""The training-time max over tokens: the same values and gradients as the dense formula, in float64."""

from __future__ import annotations

import pytest
import torch

from core.config import CodebookConfig
from core.model.codebook import CodebookHead
from core.model.token_max import dense_token_scores, token_max


def _inputs(b=3, t=7, d=5, m=11, padded=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(b, t, d, dtype=torch.float64, generator=g, requires_grad=True)
    codebook = torch.randn(m, d, dtype=torch.float64, generator=g, requires_grad=True)
    keep = None
    if padded:
        keep = torch.ones(b, t, dtype=torch.float64)
        keep[1, 4:] = 0.0  # a sample with padded tokens
        keep[2, 1:] = 0.0  # one real token: padded tokens (score 0) win wherever its score is negative
    weights = torch.randn(b, m, dtype=torch.float64, generator=g)
    return tokens, codebook, keep, weights


def _grads(pooled, weights, *leaves):
    (pooled * weights).sum().backward()
    out = [leaf.grad.clone() for leaf in leaves]
    for leaf in leaves:
        leaf.grad = None
    return out


@pytest.mark.parametrize("padded", [True, False])
def test_values_and_gradients_match_the_dense_formula(padded):
    tokens, codebook, keep, weights = _inputs(padded=padded)
    dense = dense_token_scores(tokens, codebook, keep, 0.3)
    want = _grads(dense.max(dim=1).values, weights, tokens, codebook)
    pooled, scores = token_max(tokens, codebook, keep, 0.3)
    got = _grads(pooled, weights, tokens, codebook)
    assert torch.equal(scores, dense.detach())
    assert torch.equal(pooled.detach(), dense.max(dim=1).values.detach())
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-12)
    if padded:  # the padded tokens of sample 2 won some codes and take no gradient
        assert (dense[2, 1:].max(dim=0).values > dense[2, 0]).any()
        assert torch.all(got[0][2, 1:] == 0)


def test_gradient_to_tokens_only_when_the_codebook_is_frozen():
    tokens, codebook, keep, weights = _inputs()
    codebook.requires_grad_(False)
    pooled, _ = token_max(tokens, codebook, keep, 0.3)
    (pooled * weights).sum().backward()
    assert tokens.grad is not None and codebook.grad is None


def test_head_in_training_mode_equals_evaluation_mode():
    torch.manual_seed(0)
    head = CodebookHead(CodebookConfig(size=64, dim=16, temperature=1.0)).double()
    tokens = torch.randn(4, 9, 16, dtype=torch.float64, requires_grad=True)
    pad = torch.zeros(4, 9, dtype=torch.bool)
    pad[0, 6:] = True
    head.train()
    train_out = head(tokens, pad)
    g_train = _grads(train_out.embedding, torch.ones_like(train_out.embedding), tokens, head.codebook)
    head.eval()
    eval_out = head(tokens, pad)
    g_eval = _grads(eval_out.embedding, torch.ones_like(eval_out.embedding), tokens, head.codebook)
    assert torch.allclose(train_out.embedding, eval_out.embedding, atol=1e-12)
    assert torch.equal(train_out.scores, eval_out.scores.detach())
    assert not train_out.scores.requires_grad
    for a, b in zip(g_train, g_eval):
        assert torch.allclose(a, b, atol=1e-10)
