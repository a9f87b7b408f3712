"""The fine-tuning losses against values computed by hand (p = [1/2, 1/4, 1/4] throughout)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from eegfm.metrics import losses

LOG2 = math.log(2.0)
# Logits whose softmax is exactly [1/2, 1/4, 1/4].
LOGITS = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))


def _rows(n: int) -> torch.Tensor:
    return LOGITS.expand(n, 3).clone()


def test_kl_to_one_hot_and_soft_targets():
    # KL([1,0,0] || p) = log(1 / 0.5) = log 2; KL([.5,.5,0] || p) = .5 log(.5/.5) + .5 log(.5/.25).
    target = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    assert float(losses.kl_divergence(_rows(2)[:1], target[:1])) == pytest.approx(LOG2)
    assert float(losses.kl_divergence(_rows(2)[1:], target[1:])) == pytest.approx(0.5 * LOG2)
    assert float(losses.kl_divergence(_rows(2), target)) == pytest.approx(0.75 * LOG2)


def test_kl_normalises_vote_counts_and_ignores_windows_without_votes():
    votes = torch.tensor([[3.0, 3.0, 0.0], [0.0, 0.0, 0.0]])  # 3/3 votes = [.5, .5, 0]; no votes
    assert float(losses.kl_divergence(_rows(2), votes)) == pytest.approx(0.5 * LOG2)
    nothing = losses.kl_divergence(_rows(1).requires_grad_(), torch.zeros(1, 3))
    assert float(nothing.detach()) == 0.0 and nothing.requires_grad


def test_kl_matches_the_hms_head_loss():
    from eegfm.model import EEGFMConfig, create_head

    logits = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    votes = torch.tensor(
        [[3, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 9], [0, 2, 0, 5, 0, 0]],
        dtype=torch.float32,
    )
    head_loss = create_head("hms6", EEGFMConfig.from_preset("tiny")).loss(logits, votes)
    assert float(losses.kl_divergence(logits, votes)) == pytest.approx(float(head_loss), rel=1e-6)


def test_class_weights_weigh_windows_by_their_expected_class_weight():
    # w = [2, 1, 1]: window 1 (class 0) weighs 2, window 2 ([.5,.5,0]) weighs .5*2 + .5*1 = 1.5.
    target = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    weights = torch.tensor([2.0, 1.0, 1.0])
    expected = (2 * LOG2 + 1.5 * 0.5 * LOG2) / 3.5
    assert float(losses.kl_divergence(_rows(2), target, weights)) == pytest.approx(expected)


def test_cross_entropy_with_label_smoothing_by_hand_and_as_torch():
    # eps = 0.3, K = 3: target [1,0,0] -> [0.8, 0.1, 0.1]; CE = .8 log 2 + .2 log 4 = 1.2 log 2.
    assert float(losses.soft_cross_entropy(_rows(1), torch.tensor([0]), 0.3)) == pytest.approx(1.2 * LOG2)
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 3, 1, -1, 2, 2])
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0])
    keep = labels >= 0
    reference = F.cross_entropy(logits[keep], labels[keep], weight=weights, label_smoothing=0.0)
    assert float(losses.soft_cross_entropy(logits, labels, 0.0, weights)) == pytest.approx(float(reference), rel=1e-6)
    smoothed = F.cross_entropy(logits[keep], labels[keep], label_smoothing=0.2)
    assert float(losses.soft_cross_entropy(logits, labels, 0.2)) == pytest.approx(float(smoothed), rel=1e-6)


def test_soft_cross_entropy_equals_kl_plus_target_entropy():
    target = torch.tensor([[0.5, 0.5, 0.0]])
    entropy = LOG2
    assert float(losses.soft_cross_entropy(_rows(1), target)) == pytest.approx(0.5 * LOG2 + entropy)


def test_focal_loss_by_hand():
    # class 0, gamma 2: (1 - .5)^2 log 2 = .25 log 2.
    assert float(losses.focal_loss(_rows(1), torch.tensor([0]), gamma=2.0)) == pytest.approx(0.25 * LOG2)
    # soft [.5, .5, 0]: .5 (.5)^2 log 2 + .5 (.75)^2 log 4 = (.125 + .5625) log 2.
    soft = torch.tensor([[0.5, 0.5, 0.0]])
    assert float(losses.focal_loss(_rows(1), soft, gamma=2.0)) == pytest.approx(0.6875 * LOG2)
    # gamma 0 is cross-entropy, smoothing included.
    labels = torch.tensor([1, 2])
    assert float(losses.focal_loss(_rows(2), labels, gamma=0.0, label_smoothing=0.1)) == pytest.approx(
        float(losses.soft_cross_entropy(_rows(2), labels, 0.1))
    )


def test_focal_loss_down_weights_confident_correct_windows():
    confident = torch.tensor([[4.0, 0.0, 0.0]])
    label = torch.tensor([0])
    ratio = losses.focal_loss(confident, label, 2.0) / losses.soft_cross_entropy(confident, label)
    p = torch.softmax(confident, -1)[0, 0]
    assert float(ratio) == pytest.approx(float((1 - p) ** 2), rel=1e-5)


def test_balanced_class_weights():
    # n = 12, K = 4: 12 / (4 * n_k); the absent class gets 1.
    weights = losses.balanced_class_weights([2, 6, 0, 4])
    assert weights.tolist() == pytest.approx([1.5, 0.5, 1.0, 0.75])
    with pytest.raises(ValueError, match="at least one labeled window"):
        losses.balanced_class_weights([0, 0])


def test_binary_logits_make_cross_entropy_binary_cross_entropy():
    z = torch.tensor([-2.0, 0.3, 1.5, 0.0])
    y = torch.tensor([0, 1, 1, -1])
    keep = y >= 0
    reference = F.binary_cross_entropy_with_logits(z[keep], y[keep].float())
    assert float(losses.soft_cross_entropy(losses.binary_logits(z), y)) == pytest.approx(float(reference), rel=1e-6)
    assert torch.allclose(torch.softmax(losses.binary_logits(z), -1)[:, 1], torch.sigmoid(z))


def test_bad_targets_are_rejected_with_the_shape():
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        losses.kl_divergence(_rows(2), torch.ones(2, 4))
    with pytest.raises(ValueError, match="negative"):
        losses.kl_divergence(_rows(1), torch.tensor([[1.0, -1.0, 0.0]]))
