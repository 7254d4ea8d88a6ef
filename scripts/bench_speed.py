"""``forgetbench-speed [--device auto] [--strategies naive,ewc,replay] [--no-classic] [--sweep]``

Times the same protocol through a bare PyTorch loop, forgetbench and Avalanche's classic
pipeline in one process and prints a Markdown table of times and ratios (benchmarks/speed.py).
``--sweep`` instead times a 24-run sweep serially and with the joblib launcher.
"""
import argparse


def main() -> None:
    from forgetbench.benchmarks import speed

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="default: $FORGETBENCH_DATA or ./data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--strategies", default=",".join(speed.STRATEGIES))
    parser.add_argument("--no-classic", action="store_true", help="skip the (slow) Avalanche classic pipeline")
    parser.add_argument("--sweep", action="store_true", help="time a sweep serially vs launcher=joblib instead")
    parser.add_argument("--jobs", type=int, default=2, help="joblib jobs for --sweep")
    args = parser.parse_args()
    if args.sweep:
        print(speed.format_sweep(speed.sweep(args.data_root, args.jobs)))
        return
    speed.main(args.data_root, args.device, args.strategies.split(","), classic=not args.no_classic)


if __name__ == "__main__":
    main()
