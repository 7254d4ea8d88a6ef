"""Models: a backbone (MLP or reduced ResNet-18) and an output head chosen by the scenario.

Class- and domain-IL use one linear head (:class:`ContinualNet`); task-IL uses one head per
experience (:class:`MultiHeadNet`), applied to each sample by its task label in one batched
product (no per-task loop, no host sync).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from avalanche.models import MultiTaskModule


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU (-> Dropout)`` for each hidden width."""

    def __init__(self, input_size: int, hidden_sizes: Sequence[int] = (400, 400), dropout: float = 0.0,
                 bias: bool = True, input_dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout:
            layers.append(nn.Dropout(input_dropout))
        width = input_size
        for h in hidden_sizes:
            layers += [nn.Linear(width, h, bias=bias), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.layers = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x):
        return self.layers(x)


class _BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ReducedResNet18(nn.Module):
    """ResNet-18 with ``nf`` (20) base filters: the Split-CIFAR model of GEM (Lopez-Paz & Ranzato 2017)."""

    def __init__(self, in_channels: int = 3, nf: int = 20):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, nf, 3, 1, 1, bias=False), nn.BatchNorm2d(nf), nn.ReLU())
        blocks, planes = [], nf
        for i, width in enumerate((nf, 2 * nf, 4 * nf, 8 * nf)):
            for j in range(2):
                blocks.append(_BasicBlock(planes, width, 2 if (i > 0 and j == 0) else 1))
                planes = width
        self.blocks = nn.Sequential(*blocks)
        self.out_features = planes

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1)


class MultiHead(nn.Module):
    """``num_heads`` linear heads; sample i uses head ``task_labels[i]``."""

    def __init__(self, in_features: int, num_outputs: int, num_heads: int, bias: bool = True):
        super().__init__()
        bound = 1 / math.sqrt(in_features)  # nn.Linear's default init, per head
        self.weight = nn.Parameter(torch.empty(num_heads, num_outputs, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_heads, num_outputs).uniform_(-bound, bound)) if bias else None

    def forward(self, features, task_labels):
        out = torch.einsum("bf,bkf->bk", features, self.weight[task_labels])
        return out if self.bias is None else out + self.bias[task_labels]


class ContinualNet(nn.Module):
    """Backbone + one linear head (class- and domain-IL). Task labels, if given, are ignored."""

    def __init__(self, backbone: nn.Module, num_outputs: int, head_bias: bool = True):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.out_features, num_outputs, bias=head_bias)

    def forward(self, x, task_labels=None):
        return self.head(self.backbone(x))


class MultiHeadNet(MultiTaskModule):
    """Backbone + one head per task (task-IL), an Avalanche ``MultiTaskModule``: without task
    labels it returns ``{task: output}`` for every head, as Avalanche expects (e.g. LwF)."""

    def __init__(self, backbone: nn.Module, num_outputs: int, num_heads: int, head_bias: bool = True):
        super().__init__()
        self.backbone = backbone
        self.num_heads = num_heads
        self.head = MultiHead(backbone.out_features, num_outputs, num_heads, bias=head_bias)

    def forward(self, x, task_labels=None):
        features = self.backbone(x)
        if task_labels is None:
            return {t: self.head(features, torch.full((len(x),), t, device=x.device)) for t in range(self.num_heads)}
        if isinstance(task_labels, int):
            task_labels = torch.full((len(x),), task_labels, dtype=torch.long)
        return self.head(features, task_labels.to(features.device))

    def forward_single_task(self, x, task_label):
        return self.forward(x, task_label)


def _net(backbone: nn.Module, num_outputs: int, num_heads: int, head_bias: bool = True) -> nn.Module:
    if num_heads == 1:
        return ContinualNet(backbone, num_outputs, head_bias)
    return MultiHeadNet(backbone, num_outputs, num_heads, head_bias)


def mlp(input_shape: Sequence[int], num_outputs: int, num_heads: int = 1, hidden_sizes=(400, 400),
        dropout: float = 0.0, bias: bool = True, input_dropout: float = 0.0) -> ContinualNet:
    backbone = MLP(math.prod(input_shape), list(hidden_sizes), dropout, bias, input_dropout)
    return _net(backbone, num_outputs, num_heads, head_bias=bias)


def reduced_resnet18(input_shape: Sequence[int], num_outputs: int, num_heads: int = 1, nf: int = 20) -> nn.Module:
    return _net(ReducedResNet18(input_shape[0], nf), num_outputs, num_heads)
