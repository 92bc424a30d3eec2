"""The correctness-aware (CA) calibrator of Liu et al. 2024 (docs/methods/calibrate.md §5).

A small network reads, for each transformed view of an input, the view's probabilities at the
original prediction's top classes, and outputs a temperature T(x) clamped to [0.1, 10]; the
calibrated logits are s / T(x), so the argmax (and accuracy) never changes. It is trained with the
CA loss, a class-balanced squared error between the calibrated confidence and whether the
original prediction was right. Defaults follow the released code: 3 views x top-4 = 12 inputs,
hidden width 5, Adam lr 1e-4, 10 epochs, batches of 1000. One deviation: the output layer's bias
starts at 1 (T = 1, the identity) where the released code's default init can start below the
clamp, where the gradient is zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

T_MIN, T_MAX = 0.1, 10.0


def ca_loss(scaled_logits: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """sum_i w_i (c_hat_i - c_i)^2 / sum_i w_i with w = 1 - acc on right and acc on wrong
    predictions (acc: the batch's accuracy). A batch that is all right or all wrong has every
    weight 0; it falls back to the plain mean."""
    confidence = scaled_logits.softmax(dim=1).max(dim=1).values
    target = correct.to(confidence.dtype)
    accuracy = target.mean()
    weights = torch.where(correct, 1 - accuracy, accuracy)
    squared = (confidence - target) ** 2
    if float(weights.sum()) == 0.0:
        return squared.mean()
    return (weights * squared).sum() / weights.sum()


def view_features(logits: torch.Tensor, view_logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """(N, V * top_k): each view's softmax probabilities at the original logits' top_k classes."""
    top = logits.topk(min(top_k, logits.shape[1]), dim=1).indices
    probs = view_logits.softmax(dim=2)
    index = top.unsqueeze(0).expand(probs.shape[0], -1, -1)
    return probs.gather(2, index).permute(1, 0, 2).flatten(1)


@dataclass(frozen=True)
class CAConfig:
    """The CA calibrator's settings (calibrator=ca's config)."""

    n_views: int = 3
    top_k: int = 4
    hidden: int = 5
    lr: float = 1e-4
    epochs: int = 10
    batch_size: int = 1000
    seed: int = 0


class TemperatureNet(nn.Module):
    """features -> Linear -> ReLU -> Linear -> clamp to [T_MIN, T_MAX]: one T per sample."""

    def __init__(self, config: CAConfig) -> None:
        super().__init__()
        self.top_k = config.top_k
        self.layers = nn.Sequential(
            nn.Linear(config.n_views * config.top_k, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, 1),
        )
        nn.init.constant_(self.layers[2].bias, 1.0)

    @staticmethod
    def n_params_for(config: CAConfig) -> int:
        """Weights and biases of the two layers."""
        inputs = config.n_views * config.top_k
        return inputs * config.hidden + config.hidden + config.hidden + 1

    def forward(self, logits: torch.Tensor, view_logits: torch.Tensor) -> torch.Tensor:
        features = view_features(logits, view_logits, self.top_k)
        return self.layers(features).squeeze(1).clamp(T_MIN, T_MAX)


def fit_temperature_net(
    logits: torch.Tensor, labels: torch.Tensor, view_logits: torch.Tensor, config: CAConfig
) -> TemperatureNet:
    """Train a TemperatureNet with the CA loss on shuffled batches (seeded by config.seed)."""
    torch.manual_seed(config.seed)
    logits, view_logits = logits.detach().double(), view_logits.detach().double()
    net = TemperatureNet(config).double()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    correct = logits.argmax(dim=1) == labels
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(config.epochs):
        for batch in torch.randperm(len(labels), generator=generator).split(config.batch_size):
            optimizer.zero_grad()
            temperature = net(logits[batch], view_logits[:, batch])
            loss = ca_loss(logits[batch] / temperature.unsqueeze(1), correct[batch])
            loss.backward()
            optimizer.step()
    return net.eval()
