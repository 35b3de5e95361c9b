"""latent-explorer's training package: data, the conv VAE, its loss, training, checkpoints.

import training
model = training.load_model("checkpoints/mnist-z8", device="cpu")
mu, logvar = model.encode(x)   # (N, C, H, W) in [0, 1] -> (N, D), (N, D)
x_hat = model.decode(z)        # (N, D) -> (N, C, H, W) in [0, 1]
scores = training.anomaly_score(model, x)  # (N,), higher = more anomalous
"""

from training.anomaly import anomaly_score, auroc
from training.checkpoint import CheckpointError, load_model, read_config, read_history, read_metrics
from training.data import DataError, load_data, load_dataset, read_idx
from training.evaluate import encode_dataset
from training.loop import TrainingError, TrainingInterrupted
from training.model import ConvVAE, LossParts, ModelConfig, kl_divergence, vae_loss
from training.train import TrainConfig

__all__ = [
    "CheckpointError",
    "ConvVAE",
    "DataError",
    "LossParts",
    "ModelConfig",
    "TrainConfig",
    "TrainingError",
    "TrainingInterrupted",
    "anomaly_score",
    "auroc",
    "encode_dataset",
    "kl_divergence",
    "load_data",
    "load_dataset",
    "load_model",
    "read_config",
    "read_history",
    "read_idx",
    "read_metrics",
    "vae_loss",
]
