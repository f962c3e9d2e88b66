"""Execute the notebooks in place, so the committed copies carry their outputs and figures.

Usage: ``python notebooks/execute.py [NOTEBOOK ...] [--timeout SECONDS] [--budget SECONDS]``.
Without arguments every ``*.ipynb`` beside this script runs, in name order. Each notebook runs
through ``pytest --nbmake --overwrite`` (the test suite's own runner: a fresh kernel with the
notebook's folder as working directory) and keeps its new outputs only if every cell
succeeded; a failed notebook is restored byte for byte. The wall time of each notebook is
printed; a notebook slower than ``--budget`` makes the exit status non-zero, because the test
suite runs all of them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def execute(path: Path, timeout: int) -> tuple[bool, float, str]:
    """Run one notebook top to bottom in place; returns (success, wall seconds, pytest's
    output). On failure the notebook is left as it was."""
    original = path.read_bytes()
    command = [sys.executable, "-m", "pytest", "--nbmake", "--overwrite",
               f"--nbmake-timeout={timeout}", "-p", "no:cacheprovider", "-q", str(path)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=path.parent)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        path.write_bytes(original)
    return done.returncode == 0, elapsed, done.stdout + done.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to run (default: every notebook in this folder)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    parser.add_argument("--budget", type=float, default=180.0,
                        help="seconds allowed per notebook before the run counts as failed")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(HERE.glob("*.ipynb"))
    status = 0
    for path in paths:
        ok, elapsed, output = execute(path.resolve(), args.timeout)
        if not ok:
            print(f"{path.name}: FAILED (left unchanged)\n{output}", file=sys.stderr)
            status = 1
            continue
        verdict = "ok" if elapsed <= args.budget else f"over the {args.budget:.0f} s budget"
        print(f"{path.name}: {elapsed:.1f} s ({verdict})")
        if elapsed > args.budget:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
