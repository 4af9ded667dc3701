"""Evaluation during pretraining: a k-nearest-neighbour classifier on the pooled features of a small labelled
set (`data.val`), run on rank 0 every `monitor.eval_every` steps.

A loss can fall while features stay useless; accuracy on labels the run never saw cannot. The classifier
is leave-one-out on the set itself (each clip's label is voted by its k most cosine-similar other clips,
weighted by exp(similarity / 0.07), as in DINO's k-NN), so one labelled set is enough and nothing is
trained. Its value means something beside the same evaluation of a randomly initialised encoder of the
same architecture: the run's encoder before its first step, evaluated once (`knn_top1_random`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from jepa_platform.data.dataset import VideoDataset
from jepa_platform.errors import ConfigError

TEMPERATURE = 0.07


def knn_accuracy(features: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Leave-one-out top-1 accuracy of a cosine k-NN vote over `features` [N, D] with `labels` [N]."""
    n = features.shape[0]
    if n < 2:
        return float("nan")
    unit = F.normalize(features.double(), dim=-1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-float("inf"))  # a clip does not vote for itself
    k = min(k, n - 1)
    top, index = similarity.topk(k, dim=1)
    classes = int(labels.max()) + 1
    votes = torch.zeros(n, classes, dtype=torch.float64).scatter_add_(1, labels[index], (top / TEMPERATURE).exp())
    return float((votes.argmax(dim=1) == labels).double().mean())


class KnnEvaluator:
    """The labelled set's clips (decoded once, kept in memory: the set is small) and how to score an encoder."""

    def __init__(self, source: str, *, frames: int, stride: int, resolution: int, k: int = 20,
                 max_clips: int = 512, batch_size: int = 16, seed: int = 0):
        dataset = VideoDataset(source, frames=frames, stride=stride, resolution=resolution, train=False, seed=seed)
        if len(dataset) < 2:
            raise ConfigError(f"data.val: {source} holds {len(dataset)} clip(s); a k-NN evaluation needs at least 2")
        items = [dataset[i] for i in range(min(len(dataset), max_clips))]
        self.clips = torch.stack([item["clip"] for item in items])
        self.labels = torch.tensor([int(item["label"]) for item in items])
        if len(set(self.labels.tolist())) < 2:
            raise ConfigError(f"data.val: every clip of {source} has the same label (an unlabelled folder?); the k-NN "
                              f"evaluation needs a labelled set of at least two classes")
        self.k, self.batch_size, self.source = k, batch_size, source

    @torch.no_grad()
    def evaluate(self, encoder: nn.Module, device: torch.device) -> float:
        """Top-1 accuracy of the mean-pooled features of `encoder` (left in the mode it was in)."""
        was_training = encoder.training
        encoder.eval()
        try:
            pooled = [encoder(batch.to(device)).float().mean(dim=1).cpu()
                      for batch in DataLoader(self.clips, batch_size=self.batch_size)]
        finally:
            encoder.train(was_training)
        return knn_accuracy(torch.cat(pooled), self.labels, self.k)
