"""Activations in place again for passes without gradients, only where nothing else reads their
input: same outputs, every flag restored, hooks that reduce at once unaffected."""
from __future__ import annotations

import torch
from torch import nn

from featviz.inplace import in_place, safe_in_place
from featviz.model.hookable import no_inplace


class Chain(nn.Module):
    """conv -> bn -> relu, linear -> relu: every activation may run in place."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU()
        self.fc, self.relu2 = nn.Linear(3 * 6 * 6, 4), nn.ReLU()

    def forward(self, x):
        return self.relu2(self.fc(self.relu(self.bn(self.conv(x))).flatten(1)))


class Reuse(nn.Module):
    """An activation whose input is read again after it (in place would change the sum); one
    reading a view (flatten) of a tensor read elsewhere; one reading the network's input."""

    def __init__(self):
        super().__init__()
        self.conv, self.relu = nn.Conv2d(1, 3, 3), nn.ReLU()
        self.relu_view, self.relu_input = nn.ReLU(), nn.ReLU()

    def forward(self, x):
        a = self.conv(x)
        b = self.relu(a) + a
        c = self.relu_view(a.flatten(1)).sum(1) + a.sum((1, 2, 3))
        return b.flatten(1).sum(1, keepdim=True) + c[:, None] + self.relu_input(x).flatten(1)[:, :1]


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.relu = nn.Conv2d(1, 3, 3), nn.ReLU()

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return self.relu(y)
        return y


def _x():
    return torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_a_plain_chain_runs_in_place_with_the_same_outputs():
    torch.manual_seed(0)
    net = no_inplace(Chain().eval())
    assert set(map(id, safe_in_place(net))) == {id(net.relu), id(net.relu2)}
    with torch.no_grad():
        ref = net(_x())
        with in_place(net) as mods:
            assert net.relu.inplace and net.relu2.inplace and len(mods) == 2
            out = net(_x())
    assert torch.equal(ref, out) and not net.relu.inplace and not net.relu2.inplace


def test_an_activation_whose_input_is_read_again_stays_out_of_place():
    torch.manual_seed(0)
    net = no_inplace(Reuse().eval())
    assert safe_in_place(net) == []
    with torch.no_grad():
        ref = net(_x())
        with in_place(net):
            out = net(_x())
    assert torch.equal(ref, out)
    # what in place would have done: the sum reads the ReLU's output twice
    net.relu.inplace = True
    with torch.no_grad():
        assert not torch.equal(net(_x()), ref)


def test_an_untraceable_network_keeps_its_activations_out_of_place():
    net = no_inplace(Untraceable().eval())
    assert safe_in_place(net) == []


def test_a_hook_reducing_at_once_reads_the_output_before_the_activation():
    """The probe's hooks reduce a conv's output as it is produced: the ReLU after it, in place,
    changes nothing they saw."""
    torch.manual_seed(0)
    net = no_inplace(Chain().eval())
    seen = []
    h = net.bn.register_forward_hook(lambda m, i, o: seen.append(float(o.min())))
    with torch.no_grad():
        net(_x())
        with in_place(net):
            net(_x())
    h.remove()
    assert seen[0] == seen[1] < 0  # the pre-ReLU minimum, both times
