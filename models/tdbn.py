"""Threshold-dependent batch normalisation (tdBN), exactly as the MLF authors' code computes it."""
from __future__ import annotations

import torch
from torch import nn


class TdBN(nn.Module):
    """tdBN over time-major inputs ``[T, N, C, ...]``, statistics shared over T, N and space.

    ``y = alpha * V_th * (x - mean) / (sqrt(var) + eps) * gamma + beta``

    As in the authors' code (``langfengQ/MLF-DSResNet``), ``eps`` is added *outside* the square root, the
    batch variance is biased while the running variance is updated with the unbiased one, and eval mode
    uses the running statistics.
    """

    def __init__(self, num_features: int, v_th: float = 0.6, alpha: float = 1.0, eps: float = 1e-5,
                 momentum: float = 0.1):
        super().__init__()
        self.num_features, self.v_th, self.alpha, self.eps, self.momentum = num_features, v_th, alpha, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or x.shape[2] != self.num_features:
            raise ValueError(f"TdBN expects [T, N, {self.num_features}, ...], got {list(x.shape)}")
        shape = (1, 1, self.num_features) + (1,) * (x.dim() - 3)
        dims = [d for d in range(x.dim()) if d != 2]
        if self.training:
            mean = x.mean(dims)
            var = x.var(dims, unbiased=False)
            n = x.numel() / self.num_features
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * n / max(n - 1, 1))
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.alpha * self.v_th / (var.sqrt() + self.eps)
        y = (x - mean.view(shape)) * scale.view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape)

    def affine(self):
        """The eval-mode map as ``(A, B)`` per channel: ``y = A * x + B`` (for folding into weights)."""
        a = self.alpha * self.v_th * self.weight / (self.running_var.sqrt() + self.eps)
        return a, self.bias - a * self.running_mean
