"""A seeded patients table for the bundle tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEADER = ["patient_id", "age", "bmi", "sex", "smoker", "outcome"]


def patients(n: int = 160, seed: int = 3) -> list[list[str]]:
    """Seeded rows with an ID column, two categorical columns and about 8% empty cells."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        age, bmi = rng.normal(55, 12), rng.normal(27, 4)
        sex, smoker = rng.choice(["female", "male"]), rng.choice(["never", "former", "current"])
        risk = 0.08 * (age - 55) + 0.3 * (bmi - 27) + 1.5 * (smoker == "current")
        cells = [f"P{5000 + i}", f"{age:.1f}", f"{bmi:.1f}", sex, smoker,
                 "yes" if risk + rng.logistic() > 0.5 else "no"]
        for k in (1, 2, 3, 4):
            if rng.random() < 0.08:
                cells[k] = ""
        rows.append(cells)
    return rows


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path
