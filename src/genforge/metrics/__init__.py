"""Evaluation: feature extractors (our classifier, Inception-v3), FID/KID/IS, precision/recall,
density/coverage, VAE likelihoods, and the eval.json + HTML report of ``genforge eval``.

From Python::

    from genforge.metrics import EvalSettings, evaluate_and_report
    result, paths = evaluate_and_report(genforge.load_run("runs/dcgan"), EvalSettings(n=10_000),
                                        evaluator="evaluators/mnist.pt")
    print(result["metrics"]["fid"], paths["html"])
"""

from .evaluate import ALL_METRICS, EvalSettings, TrainingEvaluator, evaluate_run
from .features import Evaluator, FeatureModule, load_evaluator, train_evaluator
from .inception import FIDInceptionV3, load_inception
from .prdc import density_coverage, prdc, precision_recall
from .report import evaluate_and_report, write_report
from .scores import fid_from_features, frechet_distance, inception_score_from_logits, kid_from_features, mean_and_covariance

__all__ = ["ALL_METRICS", "EvalSettings", "TrainingEvaluator", "evaluate_run", "evaluate_and_report", "write_report",
           "Evaluator", "FeatureModule", "load_evaluator", "train_evaluator", "FIDInceptionV3", "load_inception",
           "precision_recall", "density_coverage", "prdc", "fid_from_features", "frechet_distance",
           "inception_score_from_logits", "kid_from_features", "mean_and_covariance"]
