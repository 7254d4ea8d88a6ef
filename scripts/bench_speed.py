"""``forgetbench-speed [--device auto] [--strategies naive,ewc,replay] [--no-classic] [--sweep]``

Times the same protocol through a bare PyTorch loop, forgetbench and Avalanche's classic
pipeline in one process and prints a Markdown table of times and ratios (benchmarks/speed.py).
``--sweep`` instead times a 24-run sweep serially and with the joblib launcher; ``--threads`` one run
with torch's default threads vs ``threads=1`` vs passive OpenMP waiting, idle and with one core busy.
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
    parser.add_argument("--threads", action="store_true", help="time CPU thread settings, idle and with one core busy")
    parser.add_argument("--jobs", type=int, default=2, help="joblib jobs for --sweep")
    args = parser.parse_args()
    if args.threads:
        print(speed.format_threads(speed.threads(args.data_root)))
        return
    if args.sweep:
        print(speed.format_sweep(speed.sweep(args.data_root, args.jobs)))
        return
    speed.main(args.data_root, args.device, args.strategies.split(","), classic=not args.no_classic)


if __name__ == "__main__":
    main()
