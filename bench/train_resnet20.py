#!/usr/bin/env python3
"""Training and inference throughput: our ResNet-20 against SpikingJelly's SEW ResNet-20, side by side.

Equal settings: T = 4, CIFAR-size 32x32 synthetic images (fixed seed), batch 32, 10 classes, width 16
(ResNet-(6N+2), N = 3, stages 16/32/64), SGD, CPU, the same thread count. Ours: DS-ResNet-20 with MLF
neurons (K = 3) and tdBN, ``spikecore.models.networks.build_network``. Theirs: a ResNet-20 of SpikingJelly's SEW
``BasicBlock`` (ADD connect, IF neurons, BN, multi-step mode), the same stage layout.

Prints one JSON object per line: one per (implementation, phase) with ``images_per_s``, then one ``ratio``
line per phase (ours / theirs). Usage: ``python bench/train_resnet20.py [--iters 2] [--warmup 1]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from bench.peers import import_sew_resnet  # noqa: E402

T, BATCH, WIDTH, CLASSES, SIDE = 4, 32, 16, 10, 32


class SJSEWResNet20(nn.Module):
    """SEW ResNet-20 from SpikingJelly's blocks (multi-step, ``[T, N, C, H, W]``): conv-BN-IF stem, three stages
    of three SEW BasicBlocks (16/32/64 channels, stride 2 at stages 2 and 3), global pool, FC, mean over T."""

    def __init__(self):
        super().__init__()
        from spikingjelly.activation_based import functional, layer, neuron

        sew_resnet = import_sew_resnet()
        self.functional = functional
        node = lambda: neuron.IFNode(detach_reset=True)
        self.stem = nn.Sequential(layer.Conv2d(3, WIDTH, 3, padding=1, bias=False), layer.BatchNorm2d(WIDTH),
                                  node())
        blocks, cin = [], WIDTH
        for stage, cout in enumerate((WIDTH, 2 * WIDTH, 4 * WIDTH)):
            for b in range(3):
                stride = 2 if stage > 0 and b == 0 else 1
                down = None
                if stride != 1 or cin != cout:
                    down = nn.Sequential(layer.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                         layer.BatchNorm2d(cout))
                blocks.append(sew_resnet.BasicBlock(cin, cout, stride=stride, downsample=down, cnf="ADD",
                                                    spiking_neuron=neuron.IFNode, detach_reset=True))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = layer.AdaptiveAvgPool2d((1, 1))
        self.fc = layer.Linear(cin, CLASSES)
        functional.set_step_mode(self, "m")

    def forward(self, x):
        self.functional.reset_net(self)
        h = self.pool(self.blocks(self.stem(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))))
        return self.fc(h.flatten(2)).mean(0)


def ours():
    from spikecore.models.networks import build_network

    return build_network({"arch": "resnet", "block": "ds", "depth": 20, "width": WIDTH, "levels": 3,
                          "timesteps": T, "classes": CLASSES})


def measure(net, x, y, iters: int, warmup: int, train: bool) -> float:
    """Images per second over ``iters`` timed iterations after ``warmup`` untimed ones."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step():
        if train:
            loss = nn.functional.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            with torch.no_grad():
                net(x)

    net.train(train)
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return iters * len(y) / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2, help="timed iterations per phase (default 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up iterations (default 1)")
    args = parser.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((BATCH, 3, SIDE, SIDE), generator=g)
    y = torch.randint(0, CLASSES, (BATCH,), generator=g)
    common = {"T": T, "batch": BATCH, "image": f"{SIDE}x{SIDE}", "threads": torch.get_num_threads(),
              "iters": args.iters, "warmup": args.warmup}
    nets = {"ours DS-ResNet-20 MLF K=3": ours, "spikingjelly SEW-ResNet-20 IF": SJSEWResNet20}
    results = {}
    for phase in ("train", "inference"):
        for name, make in nets.items():
            torch.manual_seed(0)
            net = make()
            rate = measure(net, x, y, args.iters, args.warmup, train=phase == "train")
            results[(name, phase)] = rate
            print(json.dumps({"name": name, "phase": phase, "images_per_s": round(rate, 2), **common}), flush=True)
        ours_rate, theirs_rate = (results[(name, phase)] for name in nets)
        print(json.dumps({"name": "ratio", "phase": phase, "ratio": round(ours_rate / theirs_rate, 3),
                          "meaning": "ours / theirs images_per_s"}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
