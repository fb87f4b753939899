"""featviz.ascent.fold: batch norms folded into the convolutions before them for a pass without gradients:
the same outputs, only where nothing else reads the conv's output, everything given back after."""
from __future__ import annotations

import torch
from torch import nn

from featviz.ascent.fold import foldable, folded_batchnorms


def _bn(c: int, seed: int) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c)
    bn.running_mean.copy_(torch.rand(c, generator=g) * 2 - 1)
    bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    bn.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
    bn.bias.data.copy_(torch.rand(c, generator=g) - 0.5)
    return bn


class Block(nn.Module):
    """conv a -> bn -> relu -> conv b (bias-free) -> bn, plus a skip that also reads conv c's output."""

    def __init__(self):
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 6, 3, padding=1), _bn(6, 1)
        self.b, self.bn_b = nn.Conv2d(6, 6, 1, bias=False), _bn(6, 2)
        self.c, self.bn_c = nn.Conv2d(6, 6, 1), _bn(6, 3)

    def forward(self, x):
        y = self.bn_b(self.b(torch.relu(self.bn_a(self.a(x)))))
        z = self.c(y)
        return self.bn_c(z) + z  # c's output is read twice: not foldable


def test_folded_outputs_are_the_networks_and_everything_is_given_back():
    net = Block().eval()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    params = {k: v for k, v in net.named_parameters()}
    with torch.no_grad():
        ref = net(x)
        with folded_batchnorms(net) as convs:
            assert convs == [net.a, net.b]
            assert "forward" in vars(net.bn_a) and net.b.bias is not None
            out = net(x)
        assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6)
        assert torch.equal(net(x), ref)
    assert {k: v for k, v in net.named_parameters()} == params and net.b.bias is None
    assert not any("forward" in vars(m) for m in net.modules())


def test_a_conv_a_hook_reads_a_training_batch_norm_or_an_untraceable_net_is_left_alone():
    net = Block().eval()
    assert foldable(net, read=[net.a]) == [(net.b, net.bn_b)]  # a's own output is read: kept
    assert foldable(net, read=[net.bn_a]) == [(net.a, net.bn_a), (net.b, net.bn_b)]  # the bn may be read
    net.bn_b.train()
    assert foldable(net) == [(net.a, net.bn_a)]

    class Untraceable(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else x  # data-dependent control flow

    assert foldable(Untraceable().eval()) == []
