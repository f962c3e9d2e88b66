"""Execute the notebooks in place, so the committed copies carry their outputs and figures.

Usage: ``python notebooks/execute.py [NOTEBOOK ...] [--timeout SECONDS] [--budget SECONDS]``.
Without arguments every ``*.ipynb`` beside this script runs, in name order. Each notebook runs
in a fresh kernel with its own folder as working directory (as ``pytest --nbmake`` does) and is
written back only if every cell succeeded. The wall time of each notebook is printed; a
notebook slower than ``--budget`` makes the exit status non-zero, because the test suite runs
all of them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent


def execute(path: Path, timeout: int) -> float:
    """Run one notebook top to bottom in place; returns its wall time in seconds."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    nbformat.write(notebook, path)
    return elapsed


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
        try:
            elapsed = execute(path.resolve(), args.timeout)
        except CellExecutionError as exc:
            print(f"{path.name}: FAILED (left unchanged)\n{exc}", file=sys.stderr)
            status = 1
            continue
        verdict = "ok" if elapsed <= args.budget else f"over the {args.budget:.0f} s budget"
        print(f"{path.name}: {elapsed:.1f} s ({verdict})")
        if elapsed > args.budget:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
