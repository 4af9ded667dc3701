"""In-memory clips for Trainer tests: deterministic per index, so two runs see the same data."""

import torch


class RandomClips(torch.utils.data.Dataset):
    def __init__(self, n=8, shape=(3, 4, 32, 32)):
        self.clips = torch.randn(n, *shape, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        return {"clip": self.clips[i], "label": 0, "index": i}
