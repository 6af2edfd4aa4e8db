import pytest
import torch
import torch.nn.functional as F

from tileunet.losses import crop_to, weighted_cross_entropy


def test_equals_cross_entropy_with_unit_weights():
    logits = torch.randn(2, 3, 5, 5)
    target = torch.randint(0, 3, (2, 5, 5))
    expected = F.cross_entropy(logits, target)
    assert torch.allclose(weighted_cross_entropy(logits, target), expected)
    ones = torch.ones(2, 5, 5)
    assert torch.allclose(weighted_cross_entropy(logits, target, ones), expected)


def test_weights_scale_per_pixel_terms():
    logits = torch.randn(1, 2, 4, 4)
    target = torch.randint(0, 2, (1, 4, 4))
    w = torch.rand(1, 4, 4) * 5
    nll = F.cross_entropy(logits, target, reduction="none")
    assert torch.allclose(weighted_cross_entropy(logits, target, w), (w * nll).mean())


def test_zero_weight_pixels_do_not_contribute():
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    target = torch.randint(0, 2, (1, 4, 4))
    w = torch.zeros(1, 4, 4)
    w[0, 1, 1] = 1.0
    weighted_cross_entropy(logits, target, w).backward()
    grad = logits.grad.abs().sum(dim=1)[0]
    assert grad[1, 1] > 0 and grad.sum() == grad[1, 1]


def test_target_and_weights_are_centre_cropped_to_valid_output():
    logits = torch.randn(1, 2, 4, 4)
    target = torch.randint(0, 2, (1, 8, 8))
    w = torch.rand(1, 8, 8)
    expected = weighted_cross_entropy(logits, crop_to(target, logits), crop_to(w, logits))
    assert torch.allclose(weighted_cross_entropy(logits, target, w), expected)
    assert torch.equal(crop_to(target, logits), target[:, 2:6, 2:6])


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="logits"):
        weighted_cross_entropy(torch.zeros(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="target"):
        weighted_cross_entropy(torch.zeros(1, 2, 4, 4), torch.zeros(4, 4, dtype=torch.long))
