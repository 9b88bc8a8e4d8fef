#!/usr/bin/env python3
"""Rebuild Datasets/*/data.csv and schema.json from the scikit-learn wheel on PyPI.

Usage: pip download scikit-learn==1.9.1 --no-deps -d /tmp/w && python3 Datasets/extract.py /tmp/w/*.whl

The wheel is read as a zip file; scikit-learn itself is not imported. The output is byte-for-byte
reproducible (values are written exactly as they appear in the source files).
"""
import csv, gzip, hashlib, io, json, sys, zipfile

BREAST_BASE = ["radius", "texture", "perimeter", "area", "smoothness", "compactness",
               "concavity", "concave_points", "symmetry", "fractal_dimension"]


def write(folder, header, rows, schema, sources):
    with open(f"Datasets/{folder}/data.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    with open(f"Datasets/{folder}/schema.json", "w") as f:
        json.dump(schema, f, indent=2)
        f.write("\n")
    for name, digest in sources:
        print(f"{folder}: {name} sha256 {digest}")


def main(wheel):
    z = zipfile.ZipFile(wheel)
    raw = z.read("sklearn/datasets/data/breast_cancer.csv")
    lines = raw.decode().splitlines()
    classes = ["malignant", "benign"]  # the source's target 0 and 1
    names = [f"{stat}_{base}" for stat in ("mean", "se", "worst") for base in BREAST_BASE]
    rows = []
    for line in lines[1:]:
        cells = line.split(",")
        rows.append(cells[:30] + [classes[int(cells[30])]])
    values = [[float(r[i]) for r in rows] for i in range(30)]
    features = [{"name": n, "type": "float", "min": 0, "max": round(max(v) * 2, 3)} for n, v in zip(names, values)]
    schema = {"format": "cairn-schema/v1", "task": "binary", "label": {"name": "diagnosis", "classes": classes},
              "features": features}
    write("breast-cancer", names + ["diagnosis"], rows, schema,
          [("sklearn/datasets/data/breast_cancer.csv", hashlib.sha256(raw).hexdigest())])

    raw = z.read("sklearn/datasets/data/digits.csv.gz")
    text = gzip.decompress(raw).decode()
    names = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
    rows = [line.split(",") for line in text.splitlines() if line]
    classes = [str(d) for d in range(10)]
    features = [{"name": n, "type": "integer", "min": 0, "max": 16} for n in names]
    schema = {"format": "cairn-schema/v1", "task": "multiclass", "label": {"name": "digit", "classes": classes},
              "features": features}
    write("digits", names + ["digit"], [r[:64] + [str(int(float(r[64])))] for r in rows], schema,
          [("sklearn/datasets/data/digits.csv.gz", hashlib.sha256(raw).hexdigest())])


if __name__ == "__main__":
    main(sys.argv[1])
