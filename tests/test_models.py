"""Models: the multi-head output, the reduced ResNet-18, and a CIFAR run through the real loaders."""
import numpy as np
import torch

from forgetbench.benchmarks.experiment import run
from forgetbench.strategies import models
from tests.conftest import TINY, compose_cfg


def test_multi_head_applies_each_samples_own_head():
    torch.manual_seed(0)
    net = models.mlp((1, 4, 4), num_outputs=3, num_heads=4, hidden_sizes=[8])
    x, t = torch.randn(6, 1, 4, 4), torch.tensor([0, 3, 1, 3, 2, 0])
    out = net(x, t)
    features = net.backbone(x)
    for i in range(6):
        head = net.head
        expected = features[i] @ head.weight[t[i]].T + head.bias[t[i]]
        torch.testing.assert_close(out[i], expected)
    torch.testing.assert_close(net(x[:2], 3), net(x[:2], torch.tensor([3, 3])))
    every_head = net(x)  # no task labels: Avalanche's {task: output} convention (used by LwF)
    assert sorted(every_head) == [0, 1, 2, 3]
    torch.testing.assert_close(every_head[3][1], out[1])


def test_single_head_ignores_task_labels():
    net = models.mlp((1, 4, 4), num_outputs=5, hidden_sizes=[8], bias=False)
    x = torch.randn(3, 1, 4, 4)
    assert torch.equal(net(x, torch.tensor([0, 1, 2])), net(x))
    assert all(m.bias is None for m in net.modules() if isinstance(m, torch.nn.Linear))


def test_reduced_resnet18_shapes():
    net = models.reduced_resnet18((3, 32, 32), num_outputs=10, num_heads=1)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert net.backbone.out_features == 160  # 8 x nf


def test_split_cifar10_runs_with_the_resnet(tiny_root, tmp_path):
    cfg = compose_cfg(["stream=split_cifar10", "model=resnet18_reduced", "model.nf=4", "scenario=task", *TINY],
                      root=tiny_root)
    record = run(cfg, tmp_path / "cifar")
    assert record["status"] == "ok" and np.array(record["accuracy_matrix"]).shape == (6, 5)
