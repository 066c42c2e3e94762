#!/usr/bin/env python3
"""PyTorch reference for scripts/benchmark.py: one Manifold Mixup train step of PreActResNet18.

The same computation as our step, written the way the paper's code does it: the mix point k
uniform over {0, 1, 2} (`--mode manifold`), k = 0 (`input`) or none (`erm`); λ ~ Beta(α, α) and
one permutation per batch; BCE between the softmax and the mixed one-hot targets; SGD with
Nesterov momentum 0.9 and L2 decay 1e-4; random CIFAR-sized data. Prints one JSON line with the
mean step time and images/s over `--steps` steps after one warm-up step. PyTorch is the
benchmark's optional dependency (`pip install -e ".[bench]"`), never mmix_jax's.

    python scripts/torch_reference.py --batch 128 --steps 5 --mode manifold --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class Block(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3×3-BN-ReLU-conv3×3, 1×1 shortcut on change."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        return self.conv2(F.relu(self.bn2(out))) + skip


class PreActResNet18(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 64):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        stages, cin = [], width
        for i in range(4):
            cout = width * 2**i
            stages.append(nn.Sequential(Block(cin, cout, 1 if i == 0 else 2),
                                        Block(cout, cout, 1)))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor, k: int | None, perm: torch.Tensor,
                lam: float) -> torch.Tensor:
        for point, stage in enumerate(self.stages):
            if point == k:
                x = lam * x + (1 - lam) * x[perm]
            x = stage(self.stem(x) if point == 0 else x)
        return self.head(x.mean(dim=(2, 3)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--mode", default="manifold", choices=("manifold", "input", "erm"))
    parser.add_argument("--alpha", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    parser.add_argument("--size", type=int, default=32, help="image height and width")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    model = PreActResNet18()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                                weight_decay=1e-4)
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, 10, (args.batch,))

    def step() -> float:
        k = {"manifold": int(rng.integers(0, 3)), "input": 0, "erm": None}[args.mode]
        lam = float(rng.beta(args.alpha, args.alpha)) if k is not None else 1.0
        perm = torch.randperm(args.batch)
        one_hot = F.one_hot(labels, 10).float()
        targets = lam * one_hot + (1 - lam) * one_hot[perm]
        loss = F.binary_cross_entropy(F.softmax(model(images, k, perm, lam), dim=1), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()  # waits for the device

    model.train()
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    print(json.dumps({"impl": "torch-eager", "mode": args.mode, "batch": args.batch,
                      "step_s": seconds, "images_per_s": args.batch / seconds}))


if __name__ == "__main__":
    main()
