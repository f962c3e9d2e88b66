"""The `modelmarket` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import torch
from tqdm import tqdm

from analysis import audit, sweeps
from models.config import ConfigError, MarketConfig


def build_parser() -> argparse.ArgumentParser:
    """The `modelmarket` parser with its run, sweep and audit commands."""
    parser = argparse.ArgumentParser(
        prog="modelmarket", description="Simulate model-sharing markets built on "
        "personalized federated learning.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run one market and write its results")
    run.add_argument("--config", help="TOML configuration file (default: the inclusive "
                     "12-participant market)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a field, e.g. --set rounds=5 --set mechanism_params.lam=2")
    run.add_argument("--seed", type=int, help="master seed")
    run.add_argument("--out", default="results/run", help="output folder (default %(default)s)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=run_command)
    sweeps.register(commands)
    audit.register(commands)
    return parser


def load_config(path: str | None, assignments: Sequence[str], seed: int | None) -> MarketConfig:
    """The configuration from a file (or the defaults), `--set` overrides and `--seed`."""
    cfg = MarketConfig.from_toml(path) if path else MarketConfig()
    if assignments:
        cfg = cfg.with_overrides(list(assignments))
    if seed is not None:
        cfg = cfg.replace(seed=seed)
    return cfg


def run_command(args: argparse.Namespace) -> int:
    """Run one market with a progress bar, print the participant table, write the results."""
    from analysis.report import participant_table, write_run
    from models.market import MarketModel

    cfg = load_config(args.config, args.set, args.seed)
    model = MarketModel(cfg)
    if model.net_spec.arch == "mlp":
        torch.set_num_threads(1)  # small MLPs are overhead-bound: one thread runs fastest
    with tqdm(total=cfg.rounds, desc=f"{cfg.mechanism} market", unit="round",
              disable=args.quiet) as bar:
        while model.running:
            model.step()
            bar.update()
            bar.set_postfix(honest_acc=f"{model.honest_accuracy:.3f}",
                            welfare=f"{model.welfare:.1f}", trades=model.trades)
    paths = write_run(model, args.out)
    table = participant_table(model)
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\nrounds: {model.round}  honest accuracy: {model.honest_accuracy:.3f}  "
          f"platform balance: {model.platform_balance:.3f}  "
          f"hostile uploads: {len(model.hostile)}")
    print(f"results in {paths['agents'].parent}/: " + ", ".join(p.name for p in paths.values()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `modelmarket`; bad input exits with status 2 and one clear message."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"modelmarket: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"modelmarket: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
