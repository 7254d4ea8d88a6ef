"""``forgetbench``: run one experiment, or a sweep with ``-m`` (Hydra multirun).

    forgetbench stream=split_mnist strategy=ewc
    forgetbench -m strategy=naive,ewc,replay seed=0,1,2
    forgetbench --cfg job stream=permuted_mnist
"""
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from benchmarks.experiment import run

    run(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
