"""stream.validation: a seeded, stratified hold-out of each experience's training data, evaluated
instead of the test split (issue #15). Real MNIST, a few dozen samples per experience."""
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

import forgetbench
from forgetbench.benchmarks import protocol, streams
from forgetbench.benchmarks.experiment import ConfigError, run
from tests.conftest import TINY, compose_cfg

N_TRAIN = 60000  # MNIST training images: base rows below this are training data, the rest test data
KINDS = {"split_mnist": 5, "permuted_mnist": 3, "rotated_mnist": 3}  # stream -> experiences used here


def stream_of(name="split_mnist", *overrides, root):
    """The stream a run with these overrides would build (the real config, composed as the CLI does)."""
    cfg = compose_cfg([f"stream={name}", f"stream.n_experiences={KINDS.get(name, 5)}", *TINY, *overrides], root=root)
    params = dict(cfg.stream)
    params.pop("name")
    try:
        return instantiate(params, name=cfg.stream.name)
    except InstantiationException as error:  # the stream's own error, as a run surfaces it
        raise error.__cause__ from None


def held_out_rows(s) -> list[set[int]]:
    """Per experience, the dataset rows (images) of its validation part."""
    return [set(s.table.source[ids].tolist()) for ids in s.validation_ids]


@pytest.mark.parametrize("name", list(KINDS))
def test_validation_is_a_disjoint_stratified_part_of_the_training_data(name, mnist_root):
    plain = stream_of(name, "stream.max_train_per_exp=50", root=mnist_root)
    s = stream_of(name, "stream.max_train_per_exp=50", "stream.validation=0.2", root=mnist_root)
    assert plain.eval_split == "test" and plain.validation_ids is None and plain.eval_ids is plain.test_ids
    assert s.eval_split == "validation" and s.eval_ids is s.validation_ids
    assert s.info["validation"] == 0.2
    assert s.info["train_samples"] == [40] * s.num_experiences  # limit first (50), then hold out 20% of it
    assert s.info["validation_samples"] == [10] * s.num_experiences
    for e in range(s.num_experiences):
        train, val = s.train_ids[e].tolist(), s.validation_ids[e].tolist()
        assert len(val) == 10 and len(train) == 40
        assert not set(train) & set(val)  # disjoint
        assert sorted(train + val) == sorted(plain.train_ids[e].tolist())  # together: the training data used without it
        assert int(s.table.source[s.validation_ids[e]].max()) < N_TRAIN  # training images, never test images
        assert torch.equal(s.test_ids[e], plain.test_ids[e])  # the test split is untouched
        labels, all_labels = s.table.y[s.validation_ids[e]], s.table.y[plain.train_ids[e]]
        for c in all_labels.unique().tolist():  # stratified: each class holds out ~20% of its samples
            assert abs(int((labels == c).sum()) - 0.2 * int((all_labels == c).sum())) < 1
    if name != "split_mnist":  # every view holds out the same images, never trained on in another view
        rows = held_out_rows(s)
        assert all(r == rows[0] for r in rows)
        trained = set(s.table.source[torch.cat(s.train_ids)].tolist())
        assert not rows[0] & trained


def test_the_split_depends_only_on_the_seed(mnist_root):
    def rows(*overrides):
        return held_out_rows(stream_of("split_mnist", "stream.max_train_per_exp=40", "stream.validation=0.25",
                                       "stream.class_order=[0,1,2,3,4,5,6,7,8,9]", *overrides, root=mnist_root))

    naive = rows("strategy=naive", "seed=3")
    assert rows("strategy=ewc", "seed=3") == naive == rows("strategy=replay", "seed=3", "epochs=2")
    assert rows("strategy=naive", "seed=4") != naive
    # the permuted stream's held-out images: the same for a seed, not another seed's
    perm = [held_out_rows(stream_of("permuted_mnist", "stream.validation=0.1", f"seed={seed}", root=mnist_root))[0]
            for seed in (0, 0, 1)]
    assert perm[0] == perm[1] != perm[2]


@pytest.mark.parametrize("value,expected", [
    ("1", "stream.validation=1: must be a number >= 0 and < 1 or null"),
    ("1.5", "stream.validation=1.5: must be a number >= 0 and < 1 or null"),
    ("-0.1", "stream.validation=-0.1: must be a number >= 0 and < 1 or null"),
    ("abc", "stream.validation=abc: must be a number >= 0 and < 1 or null"),
])
def test_a_fraction_outside_0_1_is_refused_before_any_data_is_read(value, expected, tmp_path):
    cfg = compose_cfg(["progress=false", "device=cpu", f"stream.validation={value}"], root="/nonexistent/forgetbench-data")
    with pytest.raises(ConfigError) as error:
        run(cfg, tmp_path / "run")
    assert str(error.value) == expected


@pytest.mark.parametrize("fraction,problem", [(0.995, "leaving none to train on"), (0.005, "leaving no validation")])
def test_a_fraction_that_empties_a_part_is_refused_with_the_valid_range(fraction, problem, mnist_root, tmp_path):
    with pytest.raises(ConfigError) as error:
        stream_of("split_mnist", f"stream.validation={fraction}", root=mnist_root)  # 48 samples per experience
    message = str(error.value)
    assert message.startswith(f"stream.validation={fraction}: holds out") and problem in message
    assert "must be from 0.0105 to 0.9895" in message
    stream_of("split_mnist", "stream.validation=0.0105", root=mnist_root)  # the ends of that range work
    stream_of("split_mnist", "stream.validation=0.9895", root=mnist_root)
    cfg = compose_cfg([*TINY, f"stream.validation={fraction}"], root=mnist_root)
    with pytest.raises(ConfigError, match=r"^stream\.validation=.*must be from 0\.0105 to 0\.9895"):  # a run: exit 2
        run(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"must be a number >= 0 and < 1"):  # from Python, without the schema
        streams.build_stream("split", "mnist", mnist_root, validation=1.0, n_experiences=5)


@pytest.fixture
def evaluated(monkeypatch):
    """Records what a run evaluates: the benchmark it builds (with its stream) and each evaluated
    experience's sample count."""
    seen = {"benchmarks": [], "counts": []}
    benchmark, after_eval_exp = streams.Stream.benchmark, protocol.MatrixRecorder.after_eval_exp

    def capture_benchmark(self):
        bm = benchmark(self)
        seen["benchmarks"].append((self, bm))
        return bm

    def capture_count(self, strategy, **kwargs):
        seen["counts"].append((strategy.experience.current_experience, self._count))
        return after_eval_exp(self, strategy, **kwargs)

    monkeypatch.setattr(streams.Stream, "benchmark", capture_benchmark)
    monkeypatch.setattr(protocol.MatrixRecorder, "after_eval_exp", capture_count)
    return seen


@pytest.mark.parametrize("strategy", ["naive", "joint"])
def test_a_run_evaluates_on_the_validation_part_and_records_it(strategy, evaluated, mnist_root, tmp_path):
    cfg = forgetbench.compose([f"data.root={mnist_root}", *TINY, f"strategy={strategy}", "stream.validation=0.25"])
    record = run(cfg, out_dir=tmp_path / "run")
    assert record["status"] == "ok" and record["eval_split"] == "validation"
    assert record["config"]["stream"]["validation"] == 0.25
    assert record["stream_info"]["validation_samples"] == [12] * 5  # 25% of max_train_per_exp=48
    assert record["stream_info"]["train_samples"] == [36] * 5
    [(s, bm)] = evaluated["benchmarks"]
    for j in range(5):  # the matrix's columns are computed on the validation ids, trained on the rest
        assert torch.equal(streams.sample_ids(bm.test_stream[j].dataset).cpu(), s.validation_ids[j].cpu())
        assert torch.equal(streams.sample_ids(bm.train_stream[j].dataset).cpu(), s.train_ids[j].cpu())
    rows = 2 if strategy == "joint" else 6  # joint (offline): before and after training on everything
    assert evaluated["counts"] == [(j, 12) for _ in range(rows) for j in range(5)]  # 12 validation samples, not 24 test
    final = record["accuracy_matrix"][-1]
    assert all(abs(a * 12 - round(a * 12)) < 1e-9 for a in final)  # each accuracy is a count out of 12


def test_without_validation_a_run_evaluates_on_the_test_split(evaluated, mnist_root, tmp_path):
    cfg = forgetbench.compose([f"data.root={mnist_root}", *TINY, "stream.n_experiences=2"])
    record = run(cfg, out_dir=tmp_path / "run")
    assert record["eval_split"] == "test" and record["config"]["stream"]["validation"] is None
    assert "validation_samples" not in record["stream_info"]
    [(s, bm)] = evaluated["benchmarks"]
    assert torch.equal(streams.sample_ids(bm.test_stream[1].dataset).cpu(), s.test_ids[1].cpu())
    assert {count for _, count in evaluated["counts"]} == {24}  # max_test_per_exp=24
