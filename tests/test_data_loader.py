import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data.dataset import ImageDataset, InfiniteShardedSampler, make_loader

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


def epoch_indices(world, n, epoch, seed=0):
    out = []
    for rank in range(world):
        s = InfiniteShardedSampler(n, rank, world, seed)
        s.load_state_dict({"epoch": epoch, "position": 0})
        it = iter(s)
        out.append([next(it) for _ in range(s.epoch_length)])
    return out


@pytest.mark.parametrize("n", [10, 11, 12])
def test_sampler_every_index_once_per_epoch_across_3_ranks(n):
    e0, e1 = epoch_indices(3, n, 0), epoch_indices(3, n, 1)
    for shards in (e0, e1):
        flat = [i for shard in shards for i in shard]
        assert sorted(flat) == list(range(n))
    assert e0 != e1 and e0 == epoch_indices(3, n, 0)
    s = InfiniteShardedSampler(n, 1, 3)
    it = iter(s)
    first_two_epochs = [next(it) for _ in range(2 * s.epoch_length)]
    assert first_two_epochs == e0[1] + e1[1]


def test_sampler_resumes_mid_epoch_exactly():
    a = InfiniteShardedSampler(11, rank=2, world_size=3, seed=5)
    it = iter(a)
    [next(it) for _ in range(5)]
    state = a.state_dict()
    assert (state["epoch"], state["position"]) == (1, 2)
    expected = [next(it) for _ in range(9)]
    b = InfiniteShardedSampler(11, rank=2, world_size=3, seed=5)
    b.load_state_dict(state)
    jt = iter(b)
    assert [next(jt) for _ in range(9)] == expected
    with pytest.raises(ValueError, match="seed"):
        InfiniteShardedSampler(11, 2, 3, seed=6).load_state_dict(state)
    with pytest.raises(ValueError, match="at least one item"):
        InfiniteShardedSampler(2, 0, 3)


def test_loader_batches_resume_and_resident(official_zip):
    ds = ImageDataset(official_zip, xflip=True)
    loader = make_loader(ds, batch_size=4, seed=3, workers=2)
    batches = [next(loader) for _ in range(3)]
    images, labels = batches[0]
    assert images.dtype == torch.uint8 and images.shape == (4, 3, SIDE, SIDE)
    assert labels.dtype == torch.float32 and labels.shape == (4, 4)
    state = loader.state_dict()
    assert (state["epoch"], state["position"]) == (0, 12)
    following = [next(loader) for _ in range(3)]  # Crosses into epoch 1 (20 items per epoch).
    resumed = make_loader(ds, batch_size=4, seed=3, workers=0, state=state)
    resident = make_loader(ds, batch_size=4, seed=3, workers=0, resident=True)
    for _ in range(3):
        next(resident)
    for (a, la), (b, lb), (c, lc) in zip(
        following, [next(resumed) for _ in range(3)], [next(resident) for _ in range(3)]
    ):
        assert torch.equal(a, b) and torch.equal(a, c) and torch.equal(la, lb) and torch.equal(la, lc)
    resumed.load_state_dict(state)
    assert torch.equal(next(resumed)[0], following[0][0])


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
