#!/usr/bin/env python3
"""PyTorch reference for scripts/benchmark.py: one Manifold Mixup train step of PreActResNet18.

The same computation as our step, written the way the paper's code does it: the mix point k
uniform over {0, 1, 2} (`--mode manifold`), k = 0 (`input`) or none (`erm`); λ ~ Beta(α, α) and
one permutation per batch; BCE between the softmax and the mixed one-hot targets; SGD with
Nesterov momentum 0.9 and L2 decay 1e-4; random CIFAR-sized data. Prints one JSON line with the
mean step time and images/s over `--steps` steps after warm-up (one step per mix point, so a
compiled model has seen every k). `--dtype bfloat16` runs under autocast; `--compile` wraps the
model in `torch.compile` (its best case: one graph per k). The clock stops after the last step
has finished on the device; `--sync-every-step` also waits after each step, as the paper's code
does by logging `loss.item()`. PyTorch is the benchmark's optional dependency
(`pip install -e ".[bench]"`), never mmix_jax's.

    python scripts/torch_reference.py --batch 128 --steps 5 --mode manifold --threads 2
    python scripts/torch_reference.py --batch 512 --dtype bfloat16 --compile   # on a GPU
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
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--sync-every-step", action="store_true",
                        help="wait for each step's loss (loss.item()), as the paper's code logs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    model = PreActResNet18()
    forward = torch.compile(model) if args.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                                weight_decay=1e-4)
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, 10, (args.batch,))
    device_type = images.device.type
    points = {"manifold": [0, 1, 2], "input": [0], "erm": [None]}[args.mode]

    def step(k: int | None) -> torch.Tensor:
        lam = float(rng.beta(args.alpha, args.alpha)) if k is not None else 1.0
        perm = torch.randperm(args.batch)
        one_hot = F.one_hot(labels, 10).float()
        targets = lam * one_hot + (1 - lam) * one_hot[perm]
        with torch.autocast(device_type, dtype=torch.bfloat16,
                            enabled=args.dtype == "bfloat16"):
            logits = forward(images, k, perm, lam)
        loss = F.binary_cross_entropy(F.softmax(logits.float(), dim=1), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if args.sync_every_step:
            loss.item()
        return loss

    model.train()
    for k in points:  # warm-up: every k once (a compiled model then has every graph)
        step(k)
    step(points[0]).item()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step(points[int(rng.integers(0, len(points)))])
    loss.item()  # waits for the device
    seconds = (time.perf_counter() - start) / args.steps
    impl = "torch-compile" if args.compile else "torch-eager"
    print(json.dumps({"impl": impl, "mode": args.mode, "batch": args.batch, "dtype": args.dtype,
                      "step_s": seconds, "images_per_s": args.batch / seconds}))


if __name__ == "__main__":
    main()
