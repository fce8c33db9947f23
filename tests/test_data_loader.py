import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data.dataset import ImageDataset, StepSampler, make_loader

N, SIDE = 10, 16


def picture(i):
    """A distinct 16x16 image per index with a bright marker column on the left (to see mirroring)."""
    a = np.full((SIDE, SIDE, 3), 10 * i, dtype=np.uint8)
    a[:, 0] = 255
    a[0, :, 1] = np.arange(SIDE) * 8
    return a


def png_bytes(a):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def official_zip(tmp_path):
    """The official StyleGAN2-ADA layout, written by hand: 00000/img00000000.png ... + dataset.json."""
    path = tmp_path / "official.zip"
    labels = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(N):
            name = f"{i // 1000:05d}/img{i:08d}.png"
            zf.writestr(name, png_bytes(picture(i)))
            labels.append([name, i % 4])
        zf.writestr("dataset.json", json.dumps({"labels": labels}))
    return path


def test_official_layout_labels_one_hot(official_zip):
    ds = ImageDataset(official_zip)
    assert len(ds) == N and ds.shape == [3, SIDE, SIDE] and ds.prepared
    assert ds.c_dim == 4 and ds.num_classes == 4 and ds.label_counts == [3, 3, 2, 2]
    for i in (0, 3, 6):
        image, label = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (3, SIDE, SIDE)
        assert torch.equal(image, torch.from_numpy(picture(i)).permute(2, 0, 1))
        assert label.dtype == torch.float32 and label.tolist() == [float(k == i % 4) for k in range(4)]
    assert ImageDataset(official_zip, use_labels=False)[0][1].shape == (0,)
    assert len(ImageDataset(official_zip, max_size=4)) == 4


def test_xflip_doubles_and_mirrors(official_zip):
    ds = ImageDataset(official_zip, xflip=True)
    assert len(ds) == 2 * N
    for i in (0, 7):
        a, la = ds[i]
        b, lb = ds[i + N]
        assert torch.equal(b, a.flip(-1)) and torch.equal(la, lb)
        assert (b[:, 1:, -1] == 255).all() and not (b[:, 1:, 0] == 255).all()
    with pytest.raises(IndexError):
        ds[2 * N]


def test_zip_is_opened_lazily_and_pickles(official_zip):
    ds = ImageDataset(official_zip)
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.source._zip is None and torch.equal(clone[5][0], ds[5][0])


def test_plain_folder_sizes_and_resolution(tmp_path):
    (tmp_path / "imgs" / "deep").mkdir(parents=True)
    Image.fromarray(picture(1)).save(tmp_path / "imgs" / "a.png")
    Image.fromarray(picture(2)).convert("L").save(tmp_path / "imgs" / "deep" / "b.jpg")
    Image.fromarray(np.zeros((20, 32, 3), np.uint8)).save(tmp_path / "imgs" / "c.png")
    with pytest.raises(ValueError, match=r"2 sizes .*16x16: 2, 32x20: 1.*ganforge dataset prepare"):
        ImageDataset(tmp_path / "imgs")
    ds = ImageDataset(tmp_path / "imgs", resolution="24x12")
    assert ds.shape == [3, 12, 24] and ds.c_dim == 0
    assert [tuple(ds[i][0].shape) for i in range(3)] == [(3, 12, 24)] * 3
    (tmp_path / "imgs" / "c.png").unlink()
    ds = ImageDataset(tmp_path / "imgs")
    assert ds.shape == [3, SIDE, SIDE] and ds[1][0].shape == (3, SIDE, SIDE)


def step_shares(n, batch_size, world, step, seed=0):
    """Each rank's indices of one step."""
    return [StepSampler(n, batch_size, rank, world, seed).indices(step) for rank in range(world)]


@pytest.mark.parametrize("n", [10, 11, 12])
def test_sampler_every_index_once_per_epoch_across_3_ranks(n):
    steps = [step_shares(n, 2, 3, k) for k in range(2 * n)]  # 12n indices = 12 epochs.
    flat = [i for shares in steps for share in shares for i in share]
    epochs = [flat[e * n : (e + 1) * n] for e in range(12)]
    assert all(sorted(epoch) == list(range(n)) for epoch in epochs)
    assert epochs[0] != epochs[1]  # A new permutation every epoch.
    assert steps == [step_shares(n, 2, 3, k) for k in range(2 * n)]  # A pure function of (seed, step).
    for k, shares in enumerate(steps):
        assert [len(share) for share in shares] == [2, 2, 2]
        if k * 6 % n + 6 <= n:  # Within an epoch the ranks' shares are disjoint.
            assert len({i for share in shares for i in share}) == 6


def test_sampler_order_is_the_training_order():
    """Epoch e is randperm(n) seeded with seed + e; step k takes positions [k·B, (k+1)·B) and rank r its share."""
    n, seed = 7, 4
    stream = torch.cat([torch.randperm(n, generator=torch.Generator().manual_seed(seed + e)) for e in range(4)])
    s = StepSampler(n, batch_size=3, rank=1, world_size=2, seed=seed)
    for k in range(4):
        assert s.indices(k) == stream[6 * k + 3 : 6 * k + 6].tolist()
    assert StepSampler(n, 3, shuffle=False).indices(2) == [6, 0, 1]


def test_sampler_resumes_from_a_step():
    a = StepSampler(11, batch_size=4, rank=2, world_size=3, seed=5)
    it = iter(a)
    [next(it) for _ in range(5)]
    expected = [next(it) for _ in range(4)]
    jt = iter(StepSampler(11, batch_size=4, rank=2, world_size=3, seed=5, start_step=5))
    assert [next(jt) for _ in range(4)] == expected
    assert [StepSampler(11, 4, 2, 3, 5).indices(k) for k in range(5, 9)] == expected


@pytest.mark.parametrize(
    "args, message",
    [
        ((10, 0), "batch_size=0 must be at least 1"),
        ((10, 2, 3, 3), r"rank=3, world_size=3: need .* 0 <= rank < world_size"),
        ((10, 2, -1, 2), r"rank=-1, world_size=2"),
        ((10, 2, 0, 0), r"world_size=0: need world_size >= 1"),
        ((0, 2), "the dataset is empty"),
        ((10, 2, 0, 1, 0, -1), "start_step=-1 must be at least 0"),
    ],
)
def test_sampler_bad_arguments_say_why(args, message):
    with pytest.raises(ValueError, match=message):
        StepSampler(*args)


def test_make_loader_bad_arguments_say_why(official_zip):
    ds = ImageDataset(official_zip)
    with pytest.raises(ValueError, match="batch_size=0 must be at least 1"):
        make_loader(ds, batch_size=0, workers=0)
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        make_loader(ds, batch_size=2, rank=2, world_size=2, workers=0)
    with pytest.raises(ValueError, match="the dataset is empty"):
        make_loader([], batch_size=2, workers=0)


def test_loader_batches_resume_and_resident(official_zip):
    ds = ImageDataset(official_zip, xflip=True)
    loader = make_loader(ds, batch_size=4, seed=3, workers=2)
    batches = [next(loader) for _ in range(3)]
    images, labels = batches[0]
    assert images.dtype == torch.uint8 and images.shape == (4, 3, SIDE, SIDE)
    assert labels.dtype == torch.float32 and labels.shape == (4, 4)
    assert loader.next_step == loader.handed_out == 3  # Prefetched batches are not counted.
    following = [next(loader) for _ in range(3)]  # Crosses into epoch 1 (20 items per epoch).
    loader.close()
    resumed = make_loader(ds, batch_size=4, seed=3, workers=0, start_step=3)
    resident = make_loader(ds, batch_size=4, seed=3, workers=0, resident=True)
    for _ in range(3):
        next(resident)
    sampler = StepSampler(len(ds), 4, seed=3)
    for k, ((a, la), (b, lb), (c, lc)) in enumerate(
        zip(following, [next(resumed) for _ in range(3)], [next(resident) for _ in range(3)]), start=3
    ):
        assert torch.equal(a, b) and torch.equal(a, c) and torch.equal(la, lb) and torch.equal(la, lc)
        assert torch.equal(a, torch.stack([ds[i][0] for i in sampler.indices(k)]))
    assert resumed.next_step == resident.next_step == 6


def test_next_leaves_torch_global_generator_alone(official_zip):
    """The training loop seeds torch right before each next(loader): a batch must not draw from that stream."""
    ds = ImageDataset(official_zip)
    for resident in (False, True):
        loader = make_loader(ds, batch_size=2, workers=0, resident=resident)
        torch.manual_seed(1)
        expected = torch.rand(3)
        torch.manual_seed(1)
        next(loader)
        assert torch.equal(torch.rand(3), expected)


def test_resident_mirrors_indices_past_the_images(official_zip):
    ds = ImageDataset(official_zip, xflip=True)
    loader = make_loader(ds, batch_size=2 * N, workers=0, resident=True, shuffle=False)  # One epoch: 0..2N-1.
    images, labels = next(loader)
    for i in (0, 3, N - 1):
        assert torch.equal(images[i], ds[i][0]) and torch.equal(images[N + i], ds[i][0].flip(-1))
        assert torch.equal(labels[N + i], labels[i])
    assert (images[N:, :, 1:, -1] == 255).all() and not (images[N:, :, 1:, 0] == 255).all()


def test_sharded_loaders_split_an_epoch(official_zip):
    ds = ImageDataset(official_zip)
    seen = []
    for rank in range(2):
        loader = make_loader(ds, batch_size=5, rank=rank, world_size=2, workers=0, resident=True)
        seen.append(next(loader)[0][:, 0, 1, 1].tolist())  # The value 10 * i identifies image i.
    assert sorted(v // 10 for shard in seen for v in shard) == list(range(N))


def test_resident_memory_budget(official_zip):
    with pytest.raises(ValueError, match="resident=True would hold .* use resident=False"):
        make_loader(ImageDataset(official_zip), batch_size=2, resident=True, memory_budget=1000)
