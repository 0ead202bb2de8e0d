"""Losses for learning without labels, each a small ``torch.nn.Module``."""

from __future__ import annotations


class BarlowTwinsLoss:
    """Barlow Twins loss (Zbontar et al. 2021) as a small ``nn.Module``.

    With ``z1``, ``z2`` standardised over the batch and ``c = z1.T @ z2 / n``, the loss is
    ``sum_i (1 - c_ii)^2 + lambda * sum_{i != j} c_ij^2``: the two views of a cell should agree
    feature by feature while different features stay uncorrelated. The module is built when the
    class is called, so that importing this module does not import torch.

    Parameters
    ----------
    lambda_ : float, default 0.005
        Weight of the off-diagonal (redundancy) term.

    Returns
    -------
    torch.nn.Module
        Called as ``loss(z1, z2)`` on two ``N x D`` batches of embeddings; gives a scalar tensor.

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.losses import BarlowTwinsLoss
    >>> z = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])  # two perfectly anti-correlated features
    >>> round(float(BarlowTwinsLoss()(z, z)), 6), round(float(BarlowTwinsLoss(lambda_=1.0)(z, z)), 6)
    (0.01, 2.0)
    """

    def __new__(cls, lambda_: float = 0.005):
        import torch
        from torch import nn

        class _BarlowTwinsLoss(nn.Module):
            def __init__(self, lambda_):
                super().__init__()
                self.lambda_ = lambda_

            def forward(self, z1, z2):
                n = z1.shape[0]
                z1 = (z1 - z1.mean(0)) / z1.std(0, unbiased=False).clamp_min(1e-6)
                z2 = (z2 - z2.mean(0)) / z2.std(0, unbiased=False).clamp_min(1e-6)
                c = z1.T @ z2 / n
                diagonal = torch.diagonal(c)
                on = (1 - diagonal).pow(2).sum()
                off = c.pow(2).sum() - diagonal.pow(2).sum()
                return on + self.lambda_ * off

        return _BarlowTwinsLoss(lambda_)
