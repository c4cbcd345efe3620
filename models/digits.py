"""The embedded default: scikit-learn's bundled 8x8 digits and a small convolutional MLF network."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .neurons import MLF
from .tdbn import TdBN

DIGITS_MAX_PIXEL = 16  # sklearn's digits are integers 0..16


def load_digits_split(test_fraction: float = 0.25, seed: int = 0):
    """The fixed train/test split of scikit-learn's digits (stratified, ``random_state=seed``).

    Returns ``(x_train, y_train, x_test, y_test)`` with integer pixels ``[N, 1, 8, 8]`` (int64, 0..16)
    and labels ``[N]``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images.astype(np.int64)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return (torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_te), torch.from_numpy(y_te))


class DigitsNet(nn.Module):
    """Conv(1->c0, 3x3, pad 1) -> tdBN -> MLF -> Conv(c0->c1, 3x3, stride 2, pad 1) -> tdBN -> MLF -> Linear.

    The input is the pixel image divided by 16, repeated over ``timesteps`` (direct encoding); the logits
    are the classifier's output averaged over time. ``levels`` is the MLF K of both neuron layers, or a
    list of two (hybrid K per layer).
    """

    def __init__(self, channels=(16, 32), levels=3, timesteps: int = 4, v_th: float = 0.6,
                 width: float = 1.0, decay: float = 0.25, classes: int = 10, image_size: int = 8):
        super().__init__()
        c0, c1 = channels
        k0, k1 = (levels, levels) if isinstance(levels, int) else levels
        self.config = dict(channels=[c0, c1], levels=levels if isinstance(levels, int) else [k0, k1], timesteps=timesteps, v_th=v_th, width=width,
                           decay=decay, classes=classes, image_size=image_size)
        self.timesteps = timesteps
        self.input_scale = DIGITS_MAX_PIXEL
        self.input_shape = (1, image_size, image_size)
        self.conv0 = nn.Conv2d(1, c0, 3, stride=1, padding=1, bias=False)
        self.bn0 = TdBN(c0, v_th=v_th)
        self.act0 = MLF(k0, v_th, width, decay)
        self.conv1 = nn.Conv2d(c0, c1, 3, stride=2, padding=1, bias=False)
        self.bn1 = TdBN(c1, v_th=v_th)
        self.act1 = MLF(k1, v_th, width, decay)
        side = (image_size + 1) // 2
        self.fc = nn.Linear(c1 * side * side, classes)

    def stages(self):
        """The network as (conv, tdBN, neuron) stages followed by the classifier, for the compiler."""
        return [(self.conv0, self.bn0, self.act0), (self.conv1, self.bn1, self.act1)], self.fc

    @staticmethod
    def _time_distributed(module, x):
        t, n = x.shape[:2]
        y = module(x.reshape((t * n,) + tuple(x.shape[2:])))
        return y.reshape((t, n) + tuple(y.shape[1:]))

    def forward(self, pixels: torch.Tensor, return_spikes: bool = False):
        x = (pixels.float() / self.input_scale).unsqueeze(0).expand((self.timesteps,) + tuple(pixels.shape))
        spikes = []
        for conv, bn, act in self.stages()[0]:
            x = act(bn(self._time_distributed(conv, x)))
            spikes.append(x)
        logits = self._time_distributed(self.fc, x.flatten(2)).mean(0)
        return (logits, spikes) if return_spikes else logits
