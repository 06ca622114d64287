"""The airbench-shaped CIFAR net: the published shape, and a whitening layer that whitens."""

from __future__ import annotations

import torch

from experiments.models.airbench import AirbenchNet
from experiments.models.resnet_cifar import build


def test_shape_parameters_and_flops_match_the_description():
    from torch.utils.flop_counter import FlopCounterMode

    model = build("airbench", 10)
    assert isinstance(model, AirbenchNet)
    assert sum(p.numel() for p in model.parameters()) == 1_972_792
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert "whiten.weight" not in trained and "whiten.bias" in trained
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 6 and not any(bn.weight.requires_grad for bn in bns)  # BN scales are frozen
    with FlopCounterMode(display=False) as flops:
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and round(flops.get_total_flops() / 2 / 1e6) == 236


def test_fitted_whitening_decorrelates_the_training_patches():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 3, generator=g)
    images = torch.einsum("ij,njhw->nihw", mix, torch.randn(32, 3, 16, 16, generator=g)).cumsum(-1)
    model = AirbenchNet()
    model.fit_whitening(images)
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    w = model.whiten.weight.double()
    assert torch.equal(w[12:], -w[:12])
    out = (patches - patches.mean(0)) @ w[:12].reshape(12, 12).T
    cov = torch.cov(out.T)
    assert torch.allclose(cov, torch.diag(cov.diag()), atol=1e-6)  # decorrelated
    assert torch.all((cov.diag() > 0.9) & (cov.diag() <= 1.0))  # unit variance up to eps


def test_bn_momentum_replaces_every_batchnorm_momentum_and_none_keeps_the_nets_own():
    def momenta(model):
        return {m.momentum for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}

    assert momenta(build("airbench", 10)) == {0.4}  # airbench94's, tuned with its weight EMA
    assert momenta(build("resnet20", 10)) == {0.1}
    assert momenta(build("airbench", 10, bn_momentum=0.1)) == {0.1}
    assert momenta(build("resnet20", 10, bn_momentum=0.3)) == {0.3}
