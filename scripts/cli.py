"""``forgetbench``: run one experiment, or a sweep with ``-m`` (Hydra multirun).

    forgetbench stream=split_mnist strategy=ewc
    forgetbench -m strategy=naive,ewc,replay seed=0,1,2
    forgetbench -m launcher=joblib strategy=naive,ewc seed=0,1,2 sweep_name=grid   # again: resumes
    forgetbench --cfg job stream=permuted_mnist

In a sweep, a run that already finished (same resolved config, status ok) is skipped unless
``force=true``, and a run that fails is recorded as failed without stopping the others.
"""
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from forgetbench.strategies.plugins import enable_plugin_configs

enable_plugin_configs()  # strategy plugins' conf/ folders join Hydra's search path


@hydra.main(version_base="1.3", config_path="pkg://forgetbench.conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from forgetbench.benchmarks import sweep
    from forgetbench.benchmarks.experiment import run

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        run(cfg, out_dir)
        return

    label = f"{sweep.run_label(hydra_cfg.job.num)} {cfg.run_name}"
    done = None if cfg.force else sweep.find_finished(cfg, out_dir.parent)
    if done is not None:
        print(f"{label}: skipped, already finished in {done} (force=true re-runs it)", flush=True)
        return
    print(label, flush=True)
    try:
        run(cfg, out_dir)
    except Exception as error:  # one failed run must not stop the sweep; run() recorded it
        print(f"{label}: FAILED with {type(error).__name__}: {error}\n  see {out_dir / 'record.json'}",
              file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
