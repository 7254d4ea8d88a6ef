"""lwf_vdv (strategies/lwf.py): van de Ven & Tolias's LwF, the current batch distilled toward the previous
model with their 1/t weighting; the distillation itself is checked by hand in tests/test_sleep_dream.py
(the same ``PreviousModelTeacher``)."""
from types import SimpleNamespace

import pytest
import torch

from forgetbench.strategies.lwf import CurrentBatchDistillation


def test_the_step_weighs_current_and_distillation_as_one_over_t():
    plugin = CurrentBatchDistillation(temperature=2.0)
    batch = torch.randn(6, 3)
    seen = []
    plugin.teacher.loss = lambda strategy, x: seen.append(x) or torch.tensor(10.0)
    strategy = SimpleNamespace(loss=torch.tensor(4.0), mb_output=torch.zeros(6, 5), mb_x=batch)
    plugin.experiences = 1
    plugin.before_backward(strategy)  # no teacher yet: the current loss alone
    assert float(strategy.loss) == 4.0 and not seen and plugin.num_outputs == 5
    plugin.teacher.previous_model = torch.nn.Identity()
    for t, expected in [(2, 0.5 * 4 + 0.5 * 10), (4, 0.25 * 4 + 0.75 * 10)]:
        plugin.experiences = t
        strategy.loss = torch.tensor(4.0)
        plugin.before_backward(strategy)
        assert float(strategy.loss) == pytest.approx(expected)
    assert all(x is batch for x in seen)  # distilled on the current batch itself


def test_after_an_experience_the_teacher_is_a_frozen_copy_with_its_classes(trained):
    strategy, classes = trained("strategy=lwf_vdv")
    teacher = strategy.distill.teacher
    assert teacher.previous_model is not strategy.model and not teacher.previous_model.training
    assert list(teacher.previous_classes) == [0]
    assert teacher.previous_classes[0].nonzero().flatten().tolist() == sorted(classes)
    for a, b in zip(teacher.previous_model.parameters(), strategy.model.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr() and not a.requires_grad
