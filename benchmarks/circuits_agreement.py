"""How the weight and data measures of `featviz circuits` agree on a run whose pairs are all
weights pairs (the quick MNIST run): per pair, the share of edges with the same sign, whether each
unit's strongest positive (negative) weight partner is positive (negative) in data, and the
correlation of the two matrices.

    python benchmarks/circuits_agreement.py --results results/<run> --data results/data/<dataset-hash> --images 256
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

import featviz.circuits as C
from featviz.artifacts import read_prepared, read_units
from featviz.model import load_model
from featviz.schema import with_defaults


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True, help="results/<run>")
    ap.add_argument("--data", required=True, help="the run's prepared dataset folder")
    ap.add_argument("--images", type=int, default=256)
    a = ap.parse_args()
    torch.set_num_threads(2)
    run = Path(a.results)
    model = load_model(run / "model")
    for p in model.net.parameters():
        p.requires_grad_(False)
    units = read_units(run / "units.json")
    test = read_prepared(a.data, "test", mmap=True)
    pairs = [(C._module_name(x), C._module_name(y), x["units"], y["units"])
             for x, y in itertools.pairwise(units["layers"])]
    idx = C.spread(len(test.images), a.images)
    memory = with_defaults("circuits", {})["memory_mb"] * 2 ** 20
    data = C.data_strengths(model, [C.Pair(x, y, ua, ub, list(range(ub))) for x, y, ua, ub in pairs],
                            test.images[idx], "cpu", memory)
    for name_a, name_b, ua, ub in pairs:
        steps = C.weight_path(model.net, C._trace(model.net, {name_a, name_b}), name_a, name_b)
        got = C.weight_strengths(model.net, steps, name_b, ua) if steps is not None else None
        if got is None:
            print(f"{name_a} -> {name_b}: not a weights pair")
            continue
        w, s = got[0], data[(name_a, name_b)]
        nz = np.abs(s) > 1e-9
        same = float((np.sign(w) == np.sign(s))[nz].mean())
        pos = np.mean([s[j, np.argmax(w[j])] > 0 for j in range(ub)])
        neg = np.mean([s[j, np.argmin(w[j])] < 0 for j in range(ub)])
        r = float(np.corrcoef(w.ravel(), s.ravel())[0, 1])
        print(f"{name_a} -> {name_b}: same sign {same:.2f} of {int(nz.sum())} nonzero edges; strongest positive "
              f"weight positive in data {pos:.2f}, strongest negative negative {neg:.2f}; correlation {r:.2f}")


if __name__ == "__main__":
    main()
