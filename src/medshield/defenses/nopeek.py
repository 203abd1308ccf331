"""NoPeek: train the device half to decorrelate its activations from the raw input.

Vepakomma, Gupta, Dubey and Raskar, "Reducing leakage in distributed deep learning for
sensitive health data", ICLR 2019 workshop (and "NoPeek", arXiv:2008.09161): the device adds
:math:`\\alpha \\, \\mathrm{DCOR}(X, Z)` to its loss, where :math:`X` is the raw batch,
:math:`Z` the cut-layer activations and DCOR the sample distance correlation of Székely, Rizzo
and Bakirov (Ann. Statist. 2007):

.. math::
    a_{jk} = \\|X_j - X_k\\|_2, \\quad
    A_{jk} = a_{jk} - \\bar a_{j\\cdot} - \\bar a_{\\cdot k} + \\bar a_{\\cdot\\cdot}
    \\quad (\\text{likewise } B \\text{ from } Z),

.. math::
    \\mathrm{dCov}^2_n(X, Z) = \\frac{1}{n^2} \\sum_{j,k} A_{jk} B_{jk}, \\qquad
    \\mathrm{dCor}^2_n = \\frac{\\mathrm{dCov}^2_n(X, Z)}
    {\\sqrt{\\mathrm{dCov}^2_n(X, X)\\, \\mathrm{dCov}^2_n(Z, Z)}} .

With split learning the term is a device-side :data:`~medshield.split.device.Regularizer`:
``SplitDevice(..., regularizer=NoPeek(weight=0.1))``.

Threat model: against activation inversion (black-box MIA); no formal guarantee. A
decoder trained on the NoPeek-trained device half's outputs is the defence-aware attacker.
"""

from __future__ import annotations

import torch
from torch import Tensor

from medshield.defenses.base import DEFENSES

__all__ = ["NoPeek", "distance_correlation", "double_centered_distances"]


def double_centered_distances(x: Tensor) -> Tensor:
    """The doubly centred Euclidean distance matrix ``A`` ``(n, n)`` of the rows of ``x`` ``(n, d)``.

    Distances come from the Gram matrix; squared distances below the matrix's rounding level
    (``64 eps max_j |x_j|^2``) count as zero, and the square root is taken only of positive
    values, so coincident rows give exactly zero and finite gradients (``torch.cdist`` has
    neither guarantee).
    """
    sq = (x * x).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    tol = 64 * torch.finfo(x.dtype).eps * sq.max().detach().clamp_min(1e-30)
    pos = d2 > tol
    d = torch.where(pos, torch.where(pos, d2, torch.ones_like(d2)).sqrt(), torch.zeros_like(d2))
    return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()


def distance_correlation(x: Tensor, z: Tensor) -> Tensor:
    """Sample distance correlation ``dCor_n(x, z)`` in ``[0, 1]`` of two batches (vectorised).

    Parameters
    ----------
    x, z
        ``(n, ...)`` tensors with the same ``n >= 2``; each sample is flattened.

    Returns
    -------
    Tensor
        A 0-d tensor, differentiable w.r.t. both inputs; 0 when either batch is constant.
    """
    if x.shape[0] != z.shape[0] or x.shape[0] < 2:
        raise ValueError(
            f"distance correlation needs two batches of the same size n >= 2, got "
            f"{x.shape[0]} and {z.shape[0]} samples"
        )
    dtype = torch.promote_types(x.dtype, torch.float32)
    a = double_centered_distances(x.flatten(1).to(dtype))
    b = double_centered_distances(z.flatten(1).to(dtype))
    dcov2 = (a * b).mean()
    dvar = (a * a).mean() * (b * b).mean()
    if float(dvar.detach()) <= 0:
        return dcov2 * 0.0
    return (dcov2.clamp_min(0.0) / dvar.sqrt()).clamp_min(1e-18).sqrt()


@DEFENSES.register("nopeek", aliases=("distance-correlation",))
class NoPeek:
    """The NoPeek loss term ``weight * dCor(x, act)``, a split-learning device regularizer.

    Parameters
    ----------
    weight
        :math:`\\alpha`, the weight of the distance correlation against the task loss.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(8, 1, 4, 4)
    >>> round(float(NoPeek(weight=1.0)(x, 2 * x + 1)), 4)  # an affine map: fully correlated
    1.0
    """

    def __init__(self, *, weight: float = 0.1) -> None:
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.weight = float(weight)

    def __repr__(self) -> str:
        return f"NoPeek(weight={self.weight})"

    def __call__(self, x: Tensor, act: Tensor) -> Tensor:
        """``weight * dCor(x, act)`` for the raw batch ``x`` and its activations ``act``."""
        return self.weight * distance_correlation(x.detach(), act)
