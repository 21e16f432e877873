"""Write a large customers CSV for batch-scoring runs: real rows drawn with replacement.

Usage: python bench/make_customers.py --rows 1000000 --out var/bench/customers_1m.csv
The rows are the real contacts of customers.csv (so their dates have indicators), in a
reproducible random order; written in chunks, so memory stays small.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CHAOS_DATA_DIR", REPO.parent / "shared" / "data"))
CHUNK = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "customers_1m.csv")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    customers = pd.read_csv(DATA / "customers.csv")
    rng = np.random.default_rng(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for start in range(0, args.rows, CHUNK):
        picked = rng.integers(0, len(customers), min(CHUNK, args.rows - start))
        first = start == 0
        customers.iloc[picked].to_csv(args.out, mode="w" if first else "a", header=first, index=False)
    print(f"wrote {args.rows:,} rows to {args.out}")


if __name__ == "__main__":
    main()
