"""Models: a backbone (MLP or reduced ResNet-18) and an output head chosen by the scenario.

Class- and domain-IL use one linear head; task-IL uses one head per experience, applied to
each sample by its task label in one batched product (no per-task loop, no host sync).
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


class ContinualNet(MultiTaskModule):
    """Backbone + head. Task labels select the head in task-IL and are ignored otherwise."""

    def __init__(self, backbone: nn.Module, num_outputs: int, num_heads: int = 1, head_bias: bool = True):
        super().__init__()
        self.backbone = backbone
        self.num_heads = num_heads
        if num_heads == 1:
            self.head = nn.Linear(backbone.out_features, num_outputs, bias=head_bias)
        else:
            self.head = MultiHead(backbone.out_features, num_outputs, num_heads, bias=head_bias)

    def forward(self, x, task_labels=None):
        features = self.backbone(x)
        if self.num_heads == 1:
            return self.head(features)
        if task_labels is None:
            raise ValueError("a multi-head (task-IL) model needs task labels")
        if isinstance(task_labels, int):
            task_labels = torch.full((len(x),), task_labels, dtype=torch.long)
        return self.head(features, task_labels.to(features.device))

    def forward_single_task(self, x, task_label):
        return self.forward(x, task_label)


def mlp(input_shape: Sequence[int], num_outputs: int, num_heads: int = 1, hidden_sizes=(400, 400),
        dropout: float = 0.0, bias: bool = True, input_dropout: float = 0.0) -> ContinualNet:
    backbone = MLP(math.prod(input_shape), list(hidden_sizes), dropout, bias, input_dropout)
    return ContinualNet(backbone, num_outputs, num_heads, head_bias=bias)


def reduced_resnet18(input_shape: Sequence[int], num_outputs: int, num_heads: int = 1, nf: int = 20) -> ContinualNet:
    return ContinualNet(ReducedResNet18(input_shape[0], nf), num_outputs, num_heads)
