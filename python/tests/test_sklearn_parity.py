"""`cairn-node train` with its default settings against scikit-learn's LogisticRegression (default
settings, max_iter raised so that lbfgs converges) on iris and on a larger synthetic multiclass
set: on the same stratified splits (the held-out rows Cairn records in <model>.metrics.json),
standardised the same way, Cairn's softmax regression must come within 1 point of held-out
accuracy, averaged over five seeds (#21)."""
import csv
import json
import os
import subprocess

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE = os.path.join(os.environ.get("CAIRN_BIN", os.path.join(ROOT, ".build", "debug")), "cairn-node")
SEEDS = [1, 2, 3, 4, 5]


def write(folder, X, y, classes):
    names = [f"x{j}" for j in range(X.shape[1])]
    schema = {
        "format": "cairn-schema/v1",
        "task": "multiclass",
        "label": {"name": "label", "classes": classes},
        "features": [{"name": n, "type": "float"} for n in names],
    }
    with open(folder / "schema.json", "w") as f:
        json.dump(schema, f)
    with open(folder / "data.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names + ["label"])
        for row, label in zip(X, y):
            w.writerow([repr(float(np.float32(v))) for v in row] + [classes[label]])
    return X.astype(np.float32).astype(np.float64)


def compare(tmp_path, X, y, classes):
    X = write(tmp_path, X, y, classes)
    cairn, sklearn = [], []
    for seed in SEEDS:
        model = tmp_path / f"m{seed}.safetensors"
        subprocess.run(
            [NODE, "train", str(tmp_path / "data.csv"), "--schema", str(tmp_path / "schema.json"),
             "--model", "softmax", "--seed", str(seed), "--output", str(model), "--overwrite"],
            check=True, stdout=subprocess.DEVNULL,
        )
        metrics = json.load(open(f"{model}.metrics.json"))
        test = np.array(metrics["testRows"])
        train = np.setdiff1d(np.arange(len(y)), test)
        mean, std = X[train].mean(axis=0), X[train].std(axis=0)
        std[std == 0] = 1
        reference = LogisticRegression(max_iter=5000).fit((X[train] - mean) / std, y[train])
        sklearn.append(reference.score((X[test] - mean) / std, y[test]))
        cairn.append(metrics["test"]["accuracy"])
    return float(np.mean(cairn)), float(np.mean(sklearn)), cairn, sklearn


@pytest.mark.parametrize("name", ["iris", "synthetic"])
def test_softmax_within_one_point_of_sklearn(tmp_path, name):
    if name == "iris":
        data = load_iris()
        X, y, classes = data.data, data.target, [str(c) for c in data.target_names]
    else:
        X, y = make_classification(n_samples=3000, n_features=20, n_informative=8, n_redundant=4,
                                   n_classes=5, n_clusters_per_class=1, random_state=0)
        classes = [f"c{k}" for k in range(5)]
    cairn, sklearn, per_cairn, per_sklearn = compare(tmp_path, X, y, classes)
    print(f"{name}: cairn {cairn:.4f} sklearn {sklearn:.4f} per seed {per_cairn} {per_sklearn}")
    assert cairn >= sklearn - 0.01, f"{name}: cairn {per_cairn} against scikit-learn {per_sklearn}"
