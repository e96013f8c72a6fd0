"""Peer: the same MLP in PyTorch eager mode on the CPU (an optional extra).

784-100-50-20-10, ReLU, ``nn.Dropout(0.2)`` (keep 0.8) after each hidden
layer, softmax cross-entropy (``nn.CrossEntropyLoss``) and
``torch.optim.Adam`` (lr 3e-3, betas 0.9 and 0.999, eps 1e-8, its default
multi-tensor update). Batches are gathered from uint8 images and scaled by
1/255 inside the step, as in ``mnist_jax``. Augmentation uses PyTorch's own
bilinear resampler (``affine_grid`` and ``grid_sample`` with zero padding),
with ``mnist_jax``'s default ranges. Importing this module needs torch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VERSION = torch.__version__


def set_threads(threads: int) -> int:
    """Sets torch's intra-op threads; returns the number now used."""
    torch.set_num_threads(max(int(threads), 1))
    return torch.get_num_threads()


def make_model(sizes, keep: float = 0.8) -> nn.Sequential:
    """Returns the MLP as ``nn.Sequential`` (dropout after each hidden ReLU)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers += [nn.ReLU(), nn.Dropout(1.0 - keep)]
    return nn.Sequential(*layers)


def augment(x: torch.Tensor, gen: torch.Generator, side: int = 28) -> torch.Tensor:
    """Returns ``x`` ``(m, 784)`` rotated ±15°, shifted ±2 px, zoomed 0.9-1.1."""
    # Known limitation: the same map as mnist_jax.augment in intent, but not
    # checked pixel for pixel against it; it is here for its speed only.
    m = x.shape[0]
    u = torch.rand((m, 4), generator=gen)
    theta = torch.deg2rad((2 * u[:, 0] - 1) * 15.0)
    shift = (2 * u[:, 1:3] - 1) * 2.0 * (2.0 / side)  # pixels to [-1, 1] units
    zoom = 0.9 + 0.2 * u[:, 3]
    cos, sin = torch.cos(theta) / zoom, torch.sin(theta) / zoom
    dy, dx = shift[:, 0], shift[:, 1]
    # Output point -> input point, rows (x, y): R(-theta) / zoom (out - shift).
    affine = torch.stack(
        [
            torch.stack([cos, -sin, -(cos * dx - sin * dy)], 1),
            torch.stack([sin, cos, -(sin * dx + cos * dy)], 1),
        ],
        1,
    )
    images = x.view(m, 1, side, side)
    grid = F.affine_grid(affine, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, "bilinear", "zeros", align_corners=False)
    return out.view(m, -1)


class TorchTrainer:
    """The PyTorch peer: model, optimizer and data as tensors.

    images: ``(N, 784)`` uint8; labels: ``(N,)`` int.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, sizes, seed: int = 0):
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.model = make_model(sizes)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=3e-3, betas=(0.9, 0.999), eps=1e-8
        )
        self.loss_fn = nn.CrossEntropyLoss()

    def steps(self, batch: int, count: int, with_augment: bool) -> float:
        """Runs ``count`` training steps on random batches; returns the last loss."""
        self.model.train()
        order = torch.randperm(len(self.images), generator=self.gen)
        loss = torch.zeros(())
        for i in range(count):
            start = (i * batch) % max(len(order) - batch + 1, 1)
            loss = self._step(order[start : start + batch], with_augment)
        return float(loss)

    def epoch(self, batch: int, with_augment: bool = False) -> float:
        """Runs one shuffled epoch, the short last batch included."""
        self.model.train()
        order = torch.randperm(len(self.images), generator=self.gen)
        loss = torch.zeros(())
        for start in range(0, len(order), batch):
            loss = self._step(order[start : start + batch], with_augment)
        return float(loss)

    def _step(self, idx: torch.Tensor, with_augment: bool) -> torch.Tensor:
        x = self.images[idx].float().mul_(1 / 255)
        if with_augment:
            x = augment(x, self.gen)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), self.labels[idx])
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def predict(self, images: np.ndarray, batch: int) -> np.ndarray:
        """Returns predicted classes ``(N,)`` for images ``(N, 784)`` uint8."""
        self.model.eval()
        tensor = torch.from_numpy(np.ascontiguousarray(images))
        out = []
        with torch.inference_mode():
            for start in range(0, len(tensor), batch):
                x = tensor[start : start + batch].float().mul_(1 / 255)
                out.append(self.model(x).argmax(dim=1))
        return torch.cat(out).numpy()

    def augment_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Returns a float batch ``(m, 784)`` augmented (for the throughput)."""
        with torch.inference_mode():
            return augment(images, self.gen)
