"""``forgetbench-strategies [PATTERN] [-v]``: registered strategies, their scenarios, memory and source."""
import argparse


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="forgetbench-strategies", description=__doc__.split("\n")[0])
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard, e.g. '*ewc'")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print each strategy's parameters")
    args = parser.parse_args(argv)

    from forgetbench.strategies.registry import GENERIC, get_strategy, list_strategies

    rows = [("strategy", "scenarios", "memory", "source", "description")]
    for name in list_strategies(args.pattern):
        info = get_strategy(name)
        scenarios = "/".join(info.scenarios) + (" (offline)" if info.offline else "")
        rows.append((name, scenarios, info.memory.describe(info.defaults), info.source, info.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(row, widths)) + "  " + row[4])
        if args.verbose and row[0] != "strategy":
            params = get_strategy(row[0]).defaults
            print("    " + (", ".join(f"{k}={v!r}" for k, v in params.items()) or "(no parameters)"))
    print(f"\nany other avalanche.training strategy: strategy={GENERIC} strategy.cls=<Class> strategy.<arg>=...")


if __name__ == "__main__":
    main()
