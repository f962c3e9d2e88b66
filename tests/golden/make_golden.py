"""Freeze ByzFL's robust aggregators on seeded random inputs into robust_byzfl.npz.

ByzFL is an optional extra (``pip install -e ".[golden]"``) and is never imported by the
library or the tests; only this script uses it. Its own dependencies (torchvision among them)
may replace the CPU build of torch, and only its aggregators are needed here, so installing
it alone into a separate folder is enough:

    pip install --no-deps --target /tmp/byzfl byzfl
    PYTHONPATH=/tmp/byzfl python tests/golden/make_golden.py [--out tests/golden/robust_byzfl.npz]

The archive holds plain arrays (``<case>__X`` inputs, ``<case>__out`` ByzFL's result) and a
JSON string ``meta`` listing every case with its aggregator, ByzFL parameters and the
library versions. No pickle: load it with ``np.load(path, allow_pickle=False)``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from importlib.metadata import version
from pathlib import Path

import numpy as np


def _load_byzfl_aggregators() -> types.ModuleType:
    """byzfl.aggregators without byzfl's top-level __init__.

    That __init__ also imports ByzFL's benchmark tools, which need a torchvision build
    matching the installed torch; the aggregators need neither, so the package is registered
    as a bare namespace and only the aggregator modules are executed.
    """
    spec = importlib.util.find_spec("byzfl")
    if spec is None or spec.submodule_search_locations is None:
        raise SystemExit("byzfl is not installed: pip install -e '.[golden]'")
    package = types.ModuleType("byzfl")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("byzfl", package)
    from byzfl.aggregators import aggregators

    return aggregators

SEED = 20250704
HERE = Path(__file__).resolve().parent


def _inputs(rng: np.random.Generator, n: int, d: int, n_outliers: int) -> np.ndarray:
    """n points around a random centre, the last n_outliers pushed far away."""
    centre = rng.normal(1.0, 1.0, size=d)
    X = centre + rng.normal(0.0, 1.0, size=(n, d))
    if n_outliers:
        X[n - n_outliers :] = centre + rng.normal(0.0, 10.0, size=(n_outliers, d)) + 5.0
    return X


def _cases(byz: types.ModuleType) -> list[tuple[str, dict, object, tuple[int, int, int]]]:
    """(aggregator name, ByzFL parameters, ByzFL object, (n, d, outliers)) for every case."""
    cases = []
    for n, d in ((4, 8), (5, 4), (7, 16), (10, 33)):
        cases.append(("median", {}, byz.Median(), (n, d, (n - 1) // 2)))
    for n, d, f in ((5, 4, 1), (7, 16, 2), (9, 8, 4), (10, 33, 3), (6, 5, 0)):
        cases.append(("trimmed_mean", {"f": f}, byz.TrMean(f=f), (n, d, f)))
    for n, d, f in ((7, 4, 2), (7, 16, 1), (10, 33, 2), (11, 8, 3), (6, 3, 0)):  # n >= 2f + 3
        cases.append(("krum", {"f": f}, byz.Krum(f=f), (n, d, f)))
        cases.append(("multi_krum", {"f": f}, byz.MultiKrum(f=f), (n, d, f)))
    for n, d, nu, T in ((5, 4, 0.1, 3), (7, 16, 0.1, 3), (10, 33, 0.5, 10), (9, 8, 1e-9, 5000)):
        cases.append(("geometric_median", {"nu": nu, "T": T}, byz.GeometricMedian(nu=nu, T=T),
                      (n, d, (n - 1) // 2)))
    for n, d, tau, L in ((5, 4, 0.5, 1), (7, 16, 2.0, 1), (10, 33, 2.0, 3), (8, 8, 100.0, 2)):
        cases.append(("centered_clipping", {"tau": tau, "L": L}, byz.CenteredClipping(tau=tau, L=L),
                      (n, d, 2)))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "robust_byzfl.npz")
    out = parser.parse_args().out
    rng = np.random.default_rng(SEED)
    arrays: dict[str, np.ndarray] = {}
    listed = []
    for i, (name, params, agg, (n, d, n_out)) in enumerate(_cases(_load_byzfl_aggregators())):
        key = f"{name}_{i:02d}"
        X = _inputs(rng, n, d, n_out)
        arrays[f"{key}__X"] = X
        arrays[f"{key}__out"] = np.asarray(agg(X.copy()), dtype=np.float64)
        listed.append({"key": key, "aggregator": name, "byzfl_params": params})
    meta = {
        "seed": SEED,
        "byzfl": version("byzfl"),
        "numpy": np.__version__,
        "cases": listed,
    }
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    np.savez_compressed(out, **arrays)
    print(f"wrote {len(listed)} cases to {out} (byzfl {meta['byzfl']})")


if __name__ == "__main__":
    main()
