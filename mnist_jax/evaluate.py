"""Evaluation reports: accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_jax import model
from mnist_jax.errors import MnistJaxError
from mnist_jax.train import predict


@dataclass(frozen=True)
class Report:
    """What ``evaluate`` measured.

    confusion: ``(k, k)`` int, rows the true class, columns the predicted one.
    per_class: ``(k,)`` accuracy of each true class (NaN where it has none).
    """

    accuracy: float
    per_class: np.ndarray
    confusion: np.ndarray
    count: int

    def to_dict(self) -> dict:
        """Returns a JSON-ready dict (NaN per-class accuracy becomes None)."""
        return {
            "accuracy": self.accuracy,
            "count": self.count,
            "per_class_accuracy": [
                None if np.isnan(a) else float(a) for a in self.per_class
            ],
            "confusion": self.confusion.tolist(),
        }

    def to_text(self) -> str:
        """Returns the report as aligned plain text."""
        k = self.confusion.shape[0]
        lines = [f"accuracy {self.accuracy:.4f} on {self.count} examples", ""]
        lines.append("class  accuracy  count")
        for c in range(k):
            acc = "   -" if np.isnan(self.per_class[c]) else f"{self.per_class[c]:.4f}"
            lines.append(f"{c:>5}  {acc:>8}  {int(self.confusion[c].sum()):>5}")
        lines += ["", "confusion (rows true, columns predicted)"]
        lines.append("      " + "".join(f"{c:>6}" for c in range(k)))
        for c in range(k):
            lines.append(f"{c:>5} " + "".join(f"{n:>6}" for n in self.confusion[c]))
        return "\n".join(lines)


def confusion_matrix(labels, predictions, num_classes: int = 10) -> np.ndarray:
    """Returns the ``(k, k)`` counts of (true, predicted) pairs."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts


def evaluate(params: model.Params, images, labels, batch_size: int = 1000) -> Report:
    """Returns the report on images ``(N, 784)`` uint8 and labels ``(N,)``.

    Every example counts; labels must lie in 0..k-1.
    """
    num_classes = model.layer_sizes(params)[-1]
    model.check_pairs(images, labels, "evaluate")
    if np.shape(labels)[0] == 0:
        raise MnistJaxError("evaluate: no images to evaluate")
    model.check_labels(labels, num_classes, "evaluation labels")
    predictions = predict(params, images, batch_size)
    confusion = confusion_matrix(labels, predictions, num_classes)
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.diag(confusion) / totals
    count = int(totals.sum())
    accuracy = float(np.trace(confusion) / count) if count else float("nan")
    return Report(accuracy, per_class, confusion, count)
