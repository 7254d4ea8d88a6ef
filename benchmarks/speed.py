"""Speed benchmark: one protocol, three contenders, one process, ratios printed.

Protocol (issue #6): Split-MNIST class-IL, MLP 784-400-400-10, Adam 1e-3, batch 128, 1 epoch
per experience, the full accuracy matrix (untrained row + a row after each experience).
- ``bare``: a plain PyTorch loop on pre-normalized tensors, written here for the comparison;
- ``forgetbench``: ``benchmarks.experiment.run`` end to end (stream build excluded from the
  protocol time, reported separately);
- ``avalanche``: torchvision MNIST with per-sample transforms -> ``nc_benchmark`` -> the
  Avalanche strategy with its own loaders (the "classic" pipeline).
Time = train + every evaluation. Strategies: naive, EWC (lambda 1000), replay (1000 samples,
experience-balanced, 128 current + 128 replayed per step).
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from forgetbench.benchmarks.data import SPECS, default_root, load_dataset
from forgetbench.benchmarks.protocol import synchronize

STRATEGIES = ("naive", "ewc", "replay")
EWC_LAMBDA, MEM_SIZE, BATCH, EVAL_BATCH = 1000.0, 1000, 128, 1000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _mlp(num_classes=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                         nn.Linear(400, num_classes))


def bare(strategy: str, xs, ys, order, device, seed=0) -> tuple[float, np.ndarray]:
    """The protocol as a plain PyTorch loop over tensors already normalized and on ``device``."""
    from forgetbench.strategies.ewc import MergedEWCPlugin  # EWC: the same merged penalty as forgetbench's

    torch.manual_seed(seed)
    (x_tr, y_tr), (x_te, y_te) = xs, ys
    groups = [order[2 * i : 2 * i + 2] for i in range(5)]
    tr = [torch.isin(y_tr, torch.tensor(g, device=device)).nonzero().flatten() for g in groups]
    te = [torch.isin(y_te, torch.tensor(g, device=device)).nonzero().flatten() for g in groups]
    model = _mlp().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ewc, buffer = MergedEWCPlugin(EWC_LAMBDA), []
    R = np.zeros((6, 5))

    @torch.no_grad()
    def evaluate(row):
        model.eval()
        for j, idx in enumerate(te):
            correct = sum((model(x_te[b]).argmax(1) == y_te[b]).sum() for b in idx.split(EVAL_BATCH))
            R[row, j] = float(correct) / len(idx)
        model.train()

    synchronize(device)
    start = time.perf_counter()
    evaluate(0)
    for e, idx in enumerate(tr):
        idx = idx[torch.randperm(len(idx), device=device)]
        mem = torch.cat(buffer) if buffer else None
        for b in idx.split(BATCH):
            if mem is not None:  # replay: as many buffer samples as current ones
                b = torch.cat([b, mem[torch.randint(len(mem), (BATCH,), device=device)]])
            loss = F.cross_entropy(model(x_tr[b]), y_tr[b])
            if ewc.curvature:
                loss = loss + EWC_LAMBDA * ewc.penalty(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if strategy == "ewc":  # diagonal Fisher: mean squared gradient over the experience's batches
            fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
            batches = idx.split(BATCH)
            for b in batches:
                model.zero_grad()
                F.cross_entropy(model(x_tr[b]), y_tr[b]).backward()
                for n, p in model.named_parameters():
                    fisher[n] += p.grad.detach() ** 2
            ewc.consolidate(model, {n: f / len(batches) for n, f in fisher.items()})
        if strategy == "replay":  # experience-balanced buffer
            buffer.append(idx)
            share = MEM_SIZE // len(buffer)
            buffer = [m[torch.randperm(len(m), device=device)[:share]] for m in buffer]
        evaluate(e + 1)
    synchronize(device)
    return time.perf_counter() - start, R


def forgetbench(strategy: str, data_root: Path, device, seed=0) -> tuple[float, float, np.ndarray, list]:
    from hydra import compose, initialize_config_module

    from forgetbench.benchmarks.experiment import run

    overrides = [f"strategy={strategy}", f"seed={seed}", f"data.root={data_root}", f"device={device}",
                 "progress=false", f"eval_batch_size={EVAL_BATCH}", "threads=null"]  # the process's threads, as the others
    if strategy == "replay":
        overrides.append(f"strategy.mem_size={MEM_SIZE}")
    with initialize_config_module(config_module="forgetbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with tempfile.TemporaryDirectory() as out:
        record = run(cfg, Path(out) / "run")
    t = record["timings"]
    protocol = t["train_seconds"] + t["eval_seconds"]
    return protocol, t["total_seconds"] - protocol, np.array(record["accuracy_matrix"]), \
        record["stream_info"]["class_order"]


def avalanche_classic(strategy: str, raw_root: Path, order, device, seed=0) -> tuple[float, np.ndarray]:
    import torchvision
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark
    from avalanche.training import EWC, Naive, Replay
    from torchvision import transforms

    from forgetbench.benchmarks.experiment import silent_evaluator
    from forgetbench.benchmarks.protocol import MatrixRecorder

    torch.manual_seed(seed)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = torchvision.datasets.MNIST(str(raw_root), train=True, download=True, transform=tf)
    test = torchvision.datasets.MNIST(str(raw_root), train=False, download=True, transform=tf)
    bm = nc_benchmark(train, test, n_experiences=5, task_labels=False, fixed_class_order=order)
    recorder = MatrixRecorder(5, progress=False)
    model = _mlp()
    kwargs = dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
                  criterion=nn.CrossEntropyLoss(), train_mb_size=BATCH, train_epochs=1, eval_mb_size=EVAL_BATCH,
                  device=device, evaluator=silent_evaluator(), plugins=[recorder])
    cls = {"naive": Naive, "ewc": EWC, "replay": Replay}[strategy]
    extra = {"ewc": {"ewc_lambda": EWC_LAMBDA}, "replay": {"mem_size": MEM_SIZE}}.get(strategy, {})
    agent = cls(**kwargs, **extra)
    R = np.zeros((6, 5))

    def evaluate(row):
        recorder.results.clear()
        agent.eval(bm.test_stream)
        for j, (acc, _) in recorder.results.items():
            R[row, j] = acc

    synchronize(device)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(0)
        for e, experience in enumerate(bm.train_stream):
            agent.train(experience, eval_streams=[])
            evaluate(e + 1)
    synchronize(device)
    return time.perf_counter() - start, R


def main(data_root: str | None = None, device: str = "auto", strategies=STRATEGIES, classic: bool = True) -> list:
    from forgetbench.benchmarks.experiment import describe_device, resolve_device
    from forgetbench.benchmarks.metrics import average_accuracy

    device = resolve_device(device)
    root = Path(data_root) if data_root else None
    ds = load_dataset("mnist", root)
    data_root = root or default_root()
    mean, std = ds.mean[0], ds.std[0]
    norm = lambda x: ((x.float() / 255 - mean) / std).to(device)  # noqa: E731
    xs = (norm(ds.train_x), ds.train_y.to(device))
    ys = (norm(ds.test_x), ds.test_y.to(device))
    raw = Path(tempfile.mkdtemp(prefix="fb_mnist_"))
    shutil.copytree(Path(data_root) / SPECS["mnist"].folder, raw / "MNIST" / "raw")  # torchvision extracts here
    print(f"device: {describe_device(device)}; torch {torch.__version__}; "
          f"peak RSS after loading MNIST: {peak_rss_mb():.0f} MB", flush=True)
    rows = []
    try:
        for name in strategies:
            fb_time, fb_setup, fb_R, order = forgetbench(name, data_root, device)
            bare_time, bare_R = bare(name, xs, ys, order, device)
            row = {"strategy": name, "bare_s": bare_time, "forgetbench_s": fb_time, "fb_setup_s": fb_setup,
                   "acc_bare": average_accuracy(bare_R), "acc_fb": average_accuracy(fb_R)}
            if classic:
                av_time, av_R = avalanche_classic(name, raw, order, device)
                row.update(avalanche_s=av_time, acc_avalanche=average_accuracy(av_R))
            row["peak_rss_mb"] = peak_rss_mb()
            rows.append(row)
            print(format_row(row), flush=True)
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    print(format_table(rows))
    return rows


SWEEP = ("strategy=naive,ewc,online_ewc,replay", "stream=split_mnist,split_fashion_mnist", "seed=0,1,2")


def sweep(data_root: str | None = None, n_jobs: int = 2, grid=SWEEP) -> dict:
    """Wall time of one sweep (issue #6: 4 strategies x 2 streams x 3 seeds = 24 runs) three ways,
    each a fresh ``forgetbench -m`` process on the CPU: serially with torch's default threads, serially
    with 1 thread, and with ``launcher=joblib`` (``n_jobs`` jobs, cores // n_jobs threads each)."""
    root = Path(data_root) if data_root else default_root()
    variants = {"serial": ["threads=null"], "serial, threads=1": ["threads=1"],
                f"joblib, {n_jobs} jobs": ["launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"]}
    times = {}
    with tempfile.TemporaryDirectory() as out:
        for name, extra in variants.items():
            cmd = [sys.executable, "-m", "forgetbench.cli", "-m", *grid, *extra, f"data.root={root}", "device=cpu",
                   "progress=false", f"results_dir={out}", f"sweep_name=v{len(times)}", "logger=csv"]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent,
                           env={**os.environ, "WANDB_MODE": "disabled"})
            times[name] = time.perf_counter() - start
            print(f"  {name}: {times[name]:.1f}s", flush=True)
    return times


THREAD_VARIANTS = {  # name -> (overrides, environment)
    "torch's default threads": (["threads=null"], {}),
    "threads=1 (default)": (["threads=1"], {}),
    "default threads, OMP_WAIT_POLICY=PASSIVE": (["threads=null"], {"OMP_WAIT_POLICY": "PASSIVE"}),
}


def threads(data_root: str | None = None, repeats: int = 2) -> dict:
    """Training seconds (best of ``repeats``) of one Split-MNIST naive run on the CPU per
    :data:`THREAD_VARIANTS`, each a fresh ``forgetbench`` process, on an idle machine and while another
    process busy-loops on one core (another user's job on a shared node)."""
    root = Path(data_root) if data_root else default_root()
    times: dict = {}
    with tempfile.TemporaryDirectory() as out:
        for load in ("idle", "one core busy"):
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load != "idle" else None
            try:
                for name, (extra, env) in THREAD_VARIANTS.items():
                    runs = []
                    for i in range(repeats):
                        run_dir = Path(out) / f"{len(times)}-{i}"
                        subprocess.run([sys.executable, "-m", "forgetbench.cli", *extra, f"data.root={root}",
                                        "device=cpu", "progress=false", f"hydra.run.dir={run_dir}"], check=True,
                                       stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent,
                                       env={**os.environ, "WANDB_MODE": "disabled", **env})
                        record = json.loads((run_dir / "record.json").read_text())
                        runs.append(record["timings"]["train_seconds"])
                    times[load, name] = min(runs)
                    print(f"  {load}, {name}: {times[load, name]:.2f}s", flush=True)
            finally:
                if hog is not None:
                    hog.kill()
    return times


def format_threads(times: dict) -> str:
    names = list(THREAD_VARIANTS)
    lines = ["| machine | " + " | ".join(f"{n} (s)" for n in names) + f" | {names[0]} / threads=1 |",
             "|---|" + "---:|" * (len(names) + 1)]
    for load in dict.fromkeys(load for load, _ in times):
        row = [times[load, n] for n in names]
        lines.append(f"| {load} | " + " | ".join(f"{t:.2f}" for t in row) + f" | {row[0] / row[1]:.2f}x |")
    return "\n".join(["Split-MNIST naive, train seconds (best of 2):", *lines])


def format_sweep(times: dict, grid=SWEEP) -> str:
    (serial, t_serial), (_, t_single), (parallel, t_par) = times.items()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return "\n".join([
        f"sweep {' '.join(grid)} on {cores} CPU cores:",
        f"| serial (s) | serial, threads=1 (s) | {parallel} (s) | {parallel} / serial "
        f"| {parallel} / serial threads=1 | best possible / serial |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {t_serial:.1f} | {t_single:.1f} | {t_par:.1f} | {t_par / t_serial:.2f}x | {t_par / t_single:.2f}x "
        f"| {t_single / cores / t_serial:.2f}x |",
        "(best possible: every core busy with single-threaded runs and no overhead, serial threads=1 / cores)"])


def format_row(r: dict) -> str:
    av = f", avalanche {r['avalanche_s']:.2f}s" if "avalanche_s" in r else ""
    return f"  {r['strategy']}: bare {r['bare_s']:.2f}s, forgetbench {r['forgetbench_s']:.2f}s{av}"


def format_table(rows: list) -> str:
    lines = ["| strategy | bare loop (s) | forgetbench (s) | Avalanche classic (s) | forgetbench / bare "
             "| Avalanche / forgetbench | ACC bare / fb / Avalanche | peak RSS (MB) |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        av = r.get("avalanche_s", float("nan"))
        lines.append(
            f"| {r['strategy']} | {r['bare_s']:.2f} | {r['forgetbench_s']:.2f} | {av:.2f} "
            f"| {r['forgetbench_s'] / r['bare_s']:.2f}x | {av / r['forgetbench_s']:.1f}x "
            f"| {r['acc_bare']:.3f} / {r['acc_fb']:.3f} / {r.get('acc_avalanche', float('nan')):.3f} "
            f"| {r['peak_rss_mb']:.0f} |")
    setup = ", ".join(f"{r['strategy']} {r['fb_setup_s']:.1f}s" for r in rows)
    lines.append(f"(forgetbench's stream build, outside the protocol time: {setup})")
    return "\n".join(lines)
