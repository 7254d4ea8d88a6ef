"""Every stream x scenario composes from the real config and builds; labels, views, Avalanche."""
import pytest
import torch
from hydra.utils import instantiate

from forgetbench.benchmarks import streams
from forgetbench.benchmarks.data import load_dataset
from tests.conftest import TINY, compose_cfg

STREAMS = ["split_mnist", "split_fashion_mnist", "permuted_mnist", "rotated_mnist", "split_cifar10", "split_cifar100"]


def build(name, scenario, root, *extra):
    cfg = compose_cfg([f"stream={name}", f"scenario={scenario}", *TINY, *extra], root=root)
    params = dict(cfg.stream)
    params.pop("name")
    return instantiate(params, name=cfg.stream.name)


@pytest.mark.parametrize("scenario", streams.SCENARIOS)
@pytest.mark.parametrize("name", STREAMS)
def test_every_stream_and_scenario_builds(name, scenario, tiny_root):
    s = build(name, scenario, tiny_root)
    T = s.num_experiences
    assert T == {"split_cifar100": 10, "permuted_mnist": 10, "rotated_mnist": 10}.get(name, 5)
    assert s.num_heads == (T if scenario == "task" else 1)
    for e in range(T):
        x, y, t = s.table.gather(s.train_ids[e])
        assert x.shape[1:] == s.input_shape and len(x) > 0
        assert int(y.max()) < s.num_outputs
        assert set(t.tolist()) == {e if scenario == "task" else 0}
    bm = s.benchmark()
    assert len(bm.train_stream) == len(bm.test_stream) == T
    exp = bm.train_stream[T - 1]
    assert exp.current_experience == T - 1 and len(exp.dataset) == len(s.train_ids[T - 1])


@pytest.mark.parametrize("scenario", streams.SCENARIOS)
@pytest.mark.parametrize("name", STREAMS)
def test_every_stream_and_scenario_builds_with_a_validation_split(name, scenario, tiny_root):
    s = build(name, scenario, tiny_root, "stream.validation=0.25")
    plain = build(name, scenario, tiny_root)
    assert s.eval_split == "validation" and len(s.validation_ids) == s.num_experiences
    bm = s.benchmark()
    for e in range(s.num_experiences):
        n = len(plain.train_ids[e])
        assert len(s.validation_ids[e]) == streams.validation_size(n, 0.25) > 0 and len(s.train_ids[e]) > 0
        assert sorted(s.train_ids[e].tolist() + s.validation_ids[e].tolist()) == sorted(plain.train_ids[e].tolist())
        assert streams.sample_ids(bm.test_stream[e].dataset).tolist() == s.validation_ids[e].tolist()
        _, y, t = s.table.gather(s.validation_ids[e])
        assert int(y.max()) < s.num_outputs and set(t.tolist()) == {e if scenario == "task" else 0}


def test_split_labels_per_scenario(mnist_root):
    ds = load_dataset("mnist", mnist_root)
    order = [3, 1, 4, 0, 5, 9, 2, 6, 8, 7]
    for scenario, expected in (("class", [4, 0]), ("domain", [0, 1]), ("task", [0, 1])):
        s = streams.split_stream(ds, 5, scenario, class_order=order, max_train_per_exp=200)
        _, y, t = s.table.gather(s.train_ids[1])
        original = ds.train_y[s.table.source[s.train_ids[1]]]
        assert set(original.tolist()) == {4, 0}  # experience 1 = classes order[2:4]
        assert sorted(set(y.tolist())) == sorted(expected)
        if scenario != "class":  # local label = position of the class in its experience
            assert torch.equal(y, (original == 0).long())
        assert set(t.tolist()) == {1 if scenario == "task" else 0}
    assert s.info["class_order"] == order


def test_class_order_comes_from_the_seed(mnist_root):
    ds = load_dataset("mnist", mnist_root)
    a, b, c = (streams.split_stream(ds, 5, seed=s, max_train_per_exp=10).info["class_order"] for s in (0, 0, 1))
    assert a == b and a != c and sorted(a) == list(range(10))
    with pytest.raises(ValueError, match="permutation of 0..9"):
        streams.split_stream(ds, 5, class_order=[0, 1, 2])


def test_permuted_views_apply_each_experience_permutation(mnist_root):
    ds = load_dataset("mnist", mnist_root)
    s = streams.permuted_stream(ds, 3, "class", seed=0, max_train_per_exp=5, max_test_per_exp=5)
    plain = streams.split_stream(ds, 5, max_train_per_exp=5)  # same normalization, no permutation
    base = plain.table.images[s.table.source[s.train_ids[2]]].flatten(1)
    x, y, _ = s.table.gather(s.train_ids[2])
    perm = s.table.permutations[2]
    assert torch.equal(x.flatten(1), base[:, perm])
    assert torch.equal(y, ds.train_y[:5] + 20)  # class-IL: experience 2 owns classes 20..29
    assert s.num_outputs == 30


def test_rotation_by_zero_is_identity_and_by_180_flips(mnist_root):
    ds = load_dataset("mnist", mnist_root)
    s = streams.rotated_stream(ds, 2, angles=[0.0, 180.0], max_train_per_exp=4, max_test_per_exp=4)
    x0, _, _ = s.table.gather(s.train_ids[0])
    x180, _, _ = s.table.gather(s.train_ids[1])
    base = s.table.images[s.table.source[s.train_ids[0]]]
    torch.testing.assert_close(x0, base, atol=1e-5, rtol=0)
    torch.testing.assert_close(x180, base.flip(-1).flip(-2), atol=1e-4, rtol=0)


def test_avalanche_datasets_carry_the_table_ids_and_labels(mnist_root):
    s = streams.split_stream(load_dataset("mnist", mnist_root), 5, "task", max_train_per_exp=20)
    exp = s.benchmark().train_stream[3]
    x, y, t = exp.dataset[7]
    x_ref, y_ref, t_ref = s.table.gather(s.train_ids[3][7:8])
    assert torch.equal(x, x_ref[0]) and y == int(y_ref) and t == int(t_ref) == 3
    assert list(exp.dataset.sample_id) == s.train_ids[3].tolist() == streams.sample_ids(exp.dataset).tolist()
    assert streams.sample_ids(exp.dataset.subset([4, 1])).tolist() == s.train_ids[3][[4, 1]].tolist()
    assert exp.task_label == 3 and exp.classes_in_this_experience == {0, 1}


def test_bad_scenario_and_kind_name_the_choices(mnist_root):
    with pytest.raises(ValueError, match=r"\['class', 'task', 'domain'\]"):
        streams.build_stream("split", "mnist", mnist_root, n_experiences=5, scenario="online")
    with pytest.raises(ValueError, match="permuted.*rotated.*split"):
        streams.build_stream("shuffled", "mnist", mnist_root)


def test_batched_fetch_matches_per_sample_fetch_after_subset_and_concat(mnist_root):
    s = streams.split_stream(load_dataset("mnist", mnist_root), 5, "task", max_train_per_exp=30)
    bm = s.benchmark()
    data = bm.train_stream[1].dataset.subset([5, 2, 9]).concat(bm.train_stream[4].dataset)
    assert type(data).table is s.table and streams.sample_ids(data) is not None
    indices = [0, 2, 3, 17, 32]
    x, y, t = data.collate_fn(data.__getitems__(indices))
    x_ref, y_ref, t_ref = data.collate_fn([data[i] for i in indices])  # Avalanche's per-sample path
    assert torch.equal(x, x_ref) and torch.equal(y, y_ref) and torch.equal(t, t_ref)
