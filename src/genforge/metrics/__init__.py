"""Evaluation: feature extractors (our classifier, Inception-v3), FID/KID/IS, precision/recall,
density/coverage, VAE likelihoods, and the eval.json + HTML report of ``genforge eval``."""
