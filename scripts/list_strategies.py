"""``forgetbench-strategies [PATTERN]``: list registered strategies, their scenarios and configs."""
import sys


def main(argv=None) -> None:
    import strategies

    pattern = (argv if argv is not None else sys.argv[1:] or ["*"])[0]
    names = strategies.list_strategies(pattern)
    width = max((len(n) for n in names), default=4)
    for name in names:
        info = strategies.get_strategy(name)
        print(f"{name:<{width}}  {'/'.join(info.scenarios):<17} {info.description}  [conf/strategy/{name}.yaml]")


if __name__ == "__main__":
    main()
