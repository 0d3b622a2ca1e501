"""Losses as small pure functions of tensors. All GAN losses take logits, never probabilities:
log(sigmoid(t)) = -softplus(-t) and log(1 - sigmoid(t)) = -softplus(t) are exact and do not
overflow, where sigmoid followed by log does. Losses return a scalar (batch mean); the
importance-weight helpers at the end return one value per image."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

# --- GAN objectives (Goodfellow et al. 2014) ------------------------------------------------------
# V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))], with D(x) = sigmoid(logit).

def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D maximises log D(x) + log(1 - D(G(z))), i.e. minimises softplus(-real) + softplus(fake).

    The same for the minimax and the non-saturating games; only the generator's side differs.
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss_minimax(fake_logits: torch.Tensor) -> torch.Tensor:
    """The article's (and the paper's eq. 1) generator: minimise log(1 - D(G(z))) = -softplus(fake).

    Its gradient vanishes when D confidently rejects the fakes (early in training): d/dt = -sigmoid(t).
    """
    return -F.softplus(fake_logits).mean()


def generator_loss_non_saturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """The paper's practical variant: maximise log D(G(z)), i.e. minimise softplus(-fake).

    Same fixed point, strong gradients early: d/dt = sigmoid(t) - 1.
    """
    return F.softplus(-fake_logits).mean()


# --- other GAN objectives -------------------------------------------------------------------------
# All take the discriminator's raw outputs ("logits" for the first two, "critic values" for
# Wasserstein); batch means.

def discriminator_loss_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss (Lim and Ye 2017; Miyato et al. 2018, eq. 16): E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def generator_loss_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    """The hinge generator (Miyato et al. 2018, eq. 17): -E[D(G(z))]."""
    return -fake_logits.mean()


def discriminator_loss_wasserstein(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The critic of WGAN (Arjovsky et al. 2017, eq. 3): minimise E[D(G(z))] - E[D(x)].

    Only meaningful with a Lipschitz constraint (gradient penalty or spectral normalisation)."""
    return fake_logits.mean() - real_logits.mean()


def generator_loss_wasserstein(fake_logits: torch.Tensor) -> torch.Tensor:
    """WGAN's generator: minimise -E[D(G(z))]."""
    return -fake_logits.mean()


def discriminator_loss_least_squares(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """LSGAN (Mao et al. 2017, eq. 2 with a=0, b=1): 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]."""
    return 0.5 * (real_logits - 1.0).pow(2).mean() + 0.5 * fake_logits.pow(2).mean()


def generator_loss_least_squares(fake_logits: torch.Tensor) -> torch.Tensor:
    """LSGAN's generator (Mao et al. 2017, eq. 2 with c=1): 1/2 E[(D(G(z)) - 1)^2]."""
    return 0.5 * (fake_logits - 1.0).pow(2).mean()


GENERATOR_LOSSES = {"minimax": generator_loss_minimax, "non-saturating": generator_loss_non_saturating,
                    "hinge": generator_loss_hinge, "wasserstein": generator_loss_wasserstein,
                    "least-squares": generator_loss_least_squares}
DISCRIMINATOR_LOSSES = {"minimax": discriminator_loss, "non-saturating": discriminator_loss,
                        "hinge": discriminator_loss_hinge, "wasserstein": discriminator_loss_wasserstein,
                        "least-squares": discriminator_loss_least_squares}


# --- discriminator regularisers -------------------------------------------------------------------

def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     epsilon: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP's penalty (Gulrajani et al. 2017, eq. 3): E[(||grad_x D(x_hat)||_2 - 1)^2].

    x_hat = epsilon * real + (1 - epsilon) * fake with epsilon ~ U[0, 1] per image (Algorithm 1);
    pass `epsilon` (shape (N,)) to fix it. The graph is kept (create_graph) so that the penalty
    can be minimised. Multiply by lambda (10 in the paper) in the caller.
    """
    if epsilon is None:
        epsilon = torch.rand(real.shape[0], device=real.device)
    epsilon = epsilon.to(real.dtype).view(-1, *([1] * (real.ndim - 1)))
    mixed = (epsilon * real.detach() + (1 - epsilon) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()


def r1_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018, eq. 9, without its gamma/2): E[||grad_x D(x)||_2^2] on real images.

    Summing the logits before differentiating gives every image's own gradient, since image i's
    logit depends only on image i (true for discriminators without batch norm)."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(real).sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()


# --- VAE terms (Kingma and Welling 2014) ----------------------------------------------------------

def bernoulli_reconstruction(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) for a Bernoulli decoder: binary cross-entropy on logits, summed over pixels,
    averaged over the batch (nats per image). Targets in [0, 1]."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1).mean()


def gaussian_reconstruction(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors over pixels, averaged over the batch: -log p(x|z) of a Gaussian with
    variance 1/2, up to a constant."""
    return (mean - target).pow(2).flatten(1).sum(1).mean()


RECONSTRUCTION_LOSSES = {"bernoulli": bernoulli_reconstruction, "gaussian": gaussian_reconstruction}


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) in closed form (the paper's appendix B):
    -1/2 * sum(1 + logvar - mean^2 - exp(logvar)), summed over latent dims, batch mean."""
    return (-0.5 * (1 + logvar - mean.pow(2) - logvar.exp())).sum(1).mean()


# --- importance weights (Burda et al. 2016, "Importance weighted autoencoders") --------------------

LOG_2PI = math.log(2 * math.pi)


def log_normal(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(logvar))), summed over the last dimension."""
    return (-0.5 * (LOG_2PI + logvar + (x - mean).pow(2) / logvar.exp())).sum(-1)


def gaussian_log_likelihood(mean: torch.Tensor, target: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(target; mean, diag(exp(logvar))) per image, summed over pixels; logvar broadcasts
    against the images (one value, one per pixel, or one per pixel and image)."""
    logvar = torch.as_tensor(logvar, dtype=mean.dtype, device=mean.device).expand_as(mean)
    return (-0.5 * (LOG_2PI + logvar + (target - mean).pow(2) * torch.exp(-logvar))).flatten(1).sum(1)


def reconstruction_log_likelihood(out: torch.Tensor, target: torch.Tensor, reconstruction: str,
                                  decoder_logvar: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x|z) per image (summed over pixels, not averaged), for either decoder.

    bernoulli: -BCE(logits, x). gaussian: the same convention as gaussian_reconstruction, i.e.
    variance 1/2, with its normalising constant -D/2 * log(pi) so that it is a true log density;
    or, when decoder_logvar is given, the Gaussian with that (fixed or learned) log-variance.
    """
    if reconstruction == "bernoulli":
        return -F.binary_cross_entropy_with_logits(out, target, reduction="none").flatten(1).sum(1)
    if decoder_logvar is not None:
        return gaussian_log_likelihood(out, target, decoder_logvar)
    d = target[0].numel()
    return -(out - target).pow(2).flatten(1).sum(1) - 0.5 * d * math.log(math.pi)


def log_importance_weights(target: torch.Tensor, out: torch.Tensor, z: torch.Tensor, mean: torch.Tensor,
                           logvar: torch.Tensor, reconstruction: str,
                           decoder_logvar: torch.Tensor | None = None) -> torch.Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x) for one z per row (eq. 5 of Burda et al.).

    logsumexp over K such weights minus log K is the IWAE bound on log p(x); with K = 1 its
    expectation is the ELBO. decoder_logvar: see reconstruction_log_likelihood.
    """
    log_prior = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
    log_posterior = log_normal(z, mean, logvar)
    return (reconstruction_log_likelihood(out, target, reconstruction, decoder_logvar)
            + log_prior - log_posterior)


def importance_weighted_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """The IWAE bound per image, log (1/K) sum_k w_k (Burda et al. 2016, eq. 8), from log weights
    of shape (K, N): logsumexp over the K samples minus log K, computed stably."""
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])
