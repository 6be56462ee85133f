"""Write diabetes.csv from scikit-learn's bundled diabetes table (Efron et al. 2004), no download.

442 patients, 10 baseline variables (age, sex, body mass index, mean blood pressure and six blood
serum measurements, unscaled). scikit-learn ships it as a regression task (disease progression
one year after baseline); here the label is 1 when that progression is above the median of all
442 patients, 0 otherwise, a balanced binary task. Run from the repository root:

    .venv/bin/python simulations/data/make_diabetes.py
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes


def main() -> None:
    bunch = load_diabetes(scaled=False)
    label = (bunch.target > np.median(bunch.target)).astype(int)
    lines = [",".join([*bunch.feature_names, "label"])]
    for row, y in zip(bunch.data, label, strict=True):
        lines.append(",".join(f"{v:g}" for v in row) + f",{y}")
    path = Path(__file__).with_name("diabetes.csv")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}: {len(label)} rows, {int(label.sum())} with label 1")


if __name__ == "__main__":
    main()
