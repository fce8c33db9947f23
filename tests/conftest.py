import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


class MemDataset(torch.utils.data.Dataset):
    """The built-in demo shapes, in memory: (uint8 [C, H, W], one-hot label [3])."""

    def __init__(self, n: int = 96, res: int = 16, seed: int = 0):
        import numpy as np

        from ganforge.data.demo import demo_image

        rng = np.random.RandomState(seed)
        imgs = np.stack([demo_image(rng, res, res, i % 3) for i in range(n)])
        self.imgs = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.nn.functional.one_hot(torch.arange(n) % 3, 3).float()
        self.shape = list(self.imgs.shape[1:])
        self.c_dim = 3
        self.label_counts = [int(c) for c in self.labels.sum(0)]

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        return self.imgs[i], self.labels[i]


@pytest.fixture
def mem_dataset():
    return MemDataset()
