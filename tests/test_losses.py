"""The training objective: InfoNCE values by hand, pseudo-positive targets, composition of the total, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from core.losses import (
    MAX_LOG_SCALE,
    PAIRS,
    clip_loss,
    composed_embedding,
    pair_loss,
    pseudo_clip_loss,
    pseudo_targets,
    sat2sound_loss,
    scaled_logits,
)

INIT = math.log(1 / 0.07)


def _scales(value: float = INIT) -> torch.nn.ParameterDict:
    return torch.nn.ParameterDict({k: torch.nn.Parameter(torch.tensor(value)) for k in PAIRS})


def test_pseudo_targets_on_a_hand_made_matrix():
    s = torch.tensor([[0.9, 0.9, 0.1, 0.95],
                      [0.2, 0.5, 0.4, 0.1],
                      [0.3, 0.3, 0.3, 0.3],
                      [0.0, 0.0, 0.0, 1.0]])
    t = pseudo_targets(s)
    expected = torch.tensor([[1 / 3, 1 / 3, 0, 1 / 3],   # 0.9 (tie) and 0.95 >= diag 0.9
                             [0, 1, 0, 0],               # diag is the maximum
                             [0.25, 0.25, 0.25, 0.25],   # all tie with the diag
                             [0, 0, 0, 1]])
    torch.testing.assert_close(t, expected)
    torch.testing.assert_close(t.sum(1), torch.ones(4))


def test_pseudo_targets_need_a_square_matrix():
    with pytest.raises(ValueError, match="square"):
        pseudo_targets(torch.zeros(2, 3))


def test_clip_and_pseudo_loss_values_by_hand():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    rows = [math.log(1 + math.exp(-1)), math.log(1 + math.exp(-3))]
    cols = [math.log(1 + math.exp(-2)), math.log(1 + math.exp(-2))]
    assert clip_loss(logits).item() == pytest.approx(0.5 * (sum(rows) / 2 + sum(cols) / 2), rel=1e-6)

    logits = torch.tensor([[2.0, 3.0], [1.0, 1.0]])
    # u->v: row 0 positives {0,1} (3 >= 2), row 1 positives {0,1} (tie) -> both rows target [.5, .5]
    # v->u (transpose [[2,1],[3,1]]): row 0 positives {0}, row 1 positives {0,1}
    def ce(row, target):
        lse = math.log(sum(math.exp(x) for x in row))
        return -sum(t * (x - lse) for x, t in zip(row, target))

    uv = (ce([2, 3], [.5, .5]) + ce([1, 1], [.5, .5])) / 2
    vu = (ce([2, 1], [1, 0]) + ce([3, 1], [.5, .5])) / 2
    assert pseudo_clip_loss(logits).item() == pytest.approx(0.5 * (uv + vu), rel=1e-6)


def test_identity_embeddings_give_low_loss_and_random_ones_about_log_b():
    b = 16
    eye = torch.eye(b)
    emb = {"image": eye, "audio": eye, "audio_caption": eye, "image_caption": eye}
    total, parts = sat2sound_loss(emb, _scales(), alpha=0.1)
    assert total.item() < 1e-3
    # composed of identical parts is the same vector, so every pair is perfect
    assert all(v.item() < 1e-3 for v in parts.values())

    g = torch.Generator().manual_seed(0)
    rnd = {k: torch.randn(512, 64, generator=g) for k in emb}
    total, parts = sat2sound_loss(rnd, _scales(0.0), alpha=0.0)  # scale 1: logits in [-1, 1]
    assert parts["image_audio"].item() == pytest.approx(math.log(512), rel=0.02)
    assert total.item() == pytest.approx(3 * math.log(512), rel=0.02)


def test_total_is_tri_mean_plus_composed_plus_image_caption():
    g = torch.Generator().manual_seed(1)
    emb = {k: torch.randn(8, 12, generator=g) for k in ("image", "audio", "audio_caption", "image_caption")}
    scales = _scales()
    with torch.no_grad():
        for i, k in enumerate(PAIRS):
            scales[k].fill_(1.0 + 0.5 * i)  # distinct scales catch a pair wired to the wrong scale
    total, parts = sat2sound_loss(emb, scales, alpha=0.1)
    composed = composed_embedding(emb["audio"], emb["audio_caption"])
    expect = {
        "image_audio": pair_loss(emb["image"], emb["audio"], scales["image_audio"], 0.1),
        "image_audiocap": pair_loss(emb["image"], emb["audio_caption"], scales["image_audiocap"], 0.1),
        "audio_audiocap": pair_loss(emb["audio"], emb["audio_caption"], scales["audio_audiocap"], 0.1),
        "image_composed": pair_loss(emb["image"], composed, scales["image_composed"], 0.1),
        "image_imagecap": pair_loss(emb["image"], emb["image_caption"], scales["image_imagecap"], 0.1),
    }
    for k, v in expect.items():
        assert parts[k].item() == pytest.approx(v.item(), rel=1e-6)
    tri = (expect["image_audio"] + expect["image_audiocap"] + expect["audio_audiocap"]) / 3
    assert total.item() == pytest.approx((tri + expect["image_composed"] + expect["image_imagecap"]).item(), rel=1e-6)
    assert parts["total"].item() == pytest.approx(total.item())
    # alpha scales only the pseudo term
    logits = scaled_logits(emb["image"], emb["audio"], scales["image_audio"])
    assert expect["image_audio"].item() == pytest.approx(
        (clip_loss(logits) + 0.1 * pseudo_clip_loss(logits)).item(), rel=1e-6)


def test_composed_is_normalised_sum():
    a = torch.tensor([[2.0, 0.0]])
    c = torch.tensor([[0.0, 5.0]])
    torch.testing.assert_close(composed_embedding(a, c), torch.tensor([[0.5 ** 0.5, 0.5 ** 0.5]]))


def test_gradient_flows_to_every_embedding_and_scale():
    g = torch.Generator().manual_seed(2)
    emb = {k: torch.randn(6, 10, generator=g, requires_grad=True)
           for k in ("image", "audio", "audio_caption", "image_caption")}
    scales = _scales()
    total, _ = sat2sound_loss(emb, scales, alpha=0.1)
    total.backward()
    for k, v in emb.items():
        assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0, k
    for k, p in scales.items():
        assert p.grad is not None and p.grad.abs().item() > 0, k


def test_logit_scale_is_clamped_at_log_100():
    g = torch.Generator().manual_seed(3)
    u, v = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    big = torch.tensor(10.0, requires_grad=True)
    capped = torch.tensor(MAX_LOG_SCALE)
    torch.testing.assert_close(scaled_logits(u, v, big), scaled_logits(u, v, capped))
    pair_loss(u, v, big, 0.1).backward()
    assert big.grad.item() == 0.0  # beyond the cap the scale gets no gradient


def test_bad_inputs():
    eye = torch.eye(4)
    with pytest.raises(KeyError, match="image_caption"):
        sat2sound_loss({"image": eye, "audio": eye, "audio_caption": eye}, _scales(), 0.1)
    with pytest.raises(KeyError, match="logit scales"):
        sat2sound_loss({k: eye for k in ("image", "audio", "audio_caption", "image_caption")},
                       {"image_audio": torch.tensor(1.0)}, 0.1)
    with pytest.raises(ValueError, match="at least 2"):
        one = torch.ones(1, 4)
        sat2sound_loss({k: one for k in ("image", "audio", "audio_caption", "image_caption")}, _scales(), 0.1)
    with pytest.raises(ValueError, match="shape"):
        pair_loss(torch.ones(3, 4), torch.ones(3, 5), torch.tensor(1.0), 0.1)
