"""Dataset layer: file formats, splits, normalisation, batching, augmentation, memoisation."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import typing
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator import data
from orchestrator.config import DatasetConfig, SyntheticConfig
from orchestrator.data import registry

# --------------------------------------------------------------------------- file writers


def write_cifar(folder: Path, per_batch: int, *, protocol: int = 2, seed: int = 0):
    """The python CIFAR-10 layout: five training batches, a test batch and batches.meta."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        pixels = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": pixels,
            b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)],
        }
        payload = pickle.dumps(batch, protocol=protocol)
        if protocol == 2:
            # The published files name numpy's rebuild function as NumPy 1 (and Python 2) did.
            payload = payload.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            assert b"numpy.core.multiarray" in payload
        (folder / name).write_bytes(payload)
        written[name] = (pixels, labels)
    meta = {
        b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer"] * 2,
        b"num_cases_per_batch": per_batch,
        b"num_vis": 3072,
    }
    with (folder / "batches.meta").open("wb") as file:
        pickle.dump(meta, file, protocol=protocol)
    return written


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes((0, 0, 0x08, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(folder: Path, train: int, test: int, *, gz: bool):
    """MNIST-layout IDX files whose images carry their own index in the first two pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, count in (("train", train), ("t10k", test)):
        images = np.random.default_rng(count).integers(0, 256, (count, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(count) % 256
        images[:, 0, 1] = np.arange(count) // 256
        labels = (np.arange(count) % 10).astype(np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            payload = idx_bytes(array)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (folder / name).write_bytes(payload)
        arrays[prefix] = (images, labels)
    return arrays


def identities(split: data.ImageSplit) -> list[int]:
    """The index each test image was written with (see write_idx_dataset)."""
    pixels = split.images[:, 0, 0, :2].long()
    return (pixels[:, 0] + 256 * pixels[:, 1]).tolist()


@pytest.fixture(autouse=True)
def _fresh_cache():
    data.clear_cache()
    yield
    data.clear_cache()


# --------------------------------------------------------------------------- digests kept


def test_a_kept_digest_is_the_datas_own_and_a_changed_file_reads_again(tmp_path: Path) -> None:
    from orchestrator.data import digests, loading

    write_idx_dataset(tmp_path / "mnist", train=50, test=20, gz=False)
    section = DatasetConfig(name="mnist", root=str(tmp_path), train_subset=40)
    kept = tmp_path / "kept"

    def kept_in(fingerprint: str) -> Path:
        return kept / f"{fingerprint}.digest"

    first = digests.digest(section, 1, kept_in)
    assert first == data.load(section, seed=1).digest
    assert [p.read_text().strip() for p in kept.iterdir()] == [first]
    # Kept: the next start reads the file, not the data (a kept value it cannot tell apart
    # from a computed one, so plant one to see which was used).
    (path,) = kept.iterdir()
    path.write_text("planted\n")
    assert digests.digest(section, 1, kept_in) == "planted"
    # Another seed or section is another fingerprint.
    assert digests.fingerprint(section, 2) != digests.fingerprint(section, 1)
    assert digests.fingerprint(section.model_copy(update={"train_subset": 30}), 1) != (
        digests.fingerprint(section, 1)
    )
    # New contents of one file (a size or a modification time changed): read again.
    write_idx_dataset(tmp_path / "mnist", train=60, test=20, gz=False)
    data.clear_cache()
    loading._digests.clear()
    again = digests.digest(section, 1, kept_in)
    assert again == data.load(section, seed=1).digest != first
    assert len(list(kept.iterdir())) == 2


def test_a_missing_dataset_keeps_no_digest(tmp_path: Path) -> None:
    from orchestrator.data import digests

    section = DatasetConfig(name="mnist", root=str(tmp_path))
    with pytest.raises(data.DatasetError, match="mnist not found"):
        digests.digest(section, 0, lambda fingerprint: tmp_path / "kept" / fingerprint)
    assert not (tmp_path / "kept").exists()


# --------------------------------------------------------------------------- registry


def test_config_names_are_the_registry_names() -> None:
    # config.py stays torch-free, so it spells the names out; a dataset added to one list and
    # not the other fails here.
    allowed = typing.get_args(DatasetConfig.model_fields["name"].annotation)
    assert sorted(allowed) == registry.available()
    assert all(registry.spec(name).name == name for name in allowed)


def test_unknown_dataset_lists_the_registered_ones() -> None:
    with pytest.raises(data.DatasetError, match="unknown dataset 'imagenet'; available: cifar10"):
        registry.spec("imagenet")


def test_the_registered_shape_is_what_a_reader_checks_and_load_reports(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "mnist", train=20, test=10, gz=False)
    config = DatasetConfig(name="mnist", root=str(tmp_path))
    mnist = registry.spec("mnist")
    assert data.load(config).profile()["shape"] == "1x28x28"

    wider = replace(mnist, shape=data.DatasetShape(num_classes=10, channels=1, image_size=32))
    with pytest.raises(data.DatasetError, match="28x28 images where mnist has 32x32"):
        wider.read(wider, config, 0)
    fewer = replace(mnist, shape=data.DatasetShape(num_classes=5, channels=1, image_size=28))
    with pytest.raises(data.DatasetError, match=r"labels-idx1-ubyte: labels outside 0\.\.4"):
        fewer.read(fewer, config, 0)


def test_a_spec_has_both_shape_and_files_or_neither() -> None:
    with pytest.raises(ValueError, match="give both shape and files, or neither"):
        replace(registry.spec("mnist"), files=None)
    assert registry.spec("synthetic").generated and not registry.spec("cifar10").generated


# --------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_round_trips_the_python_batches(tmp_path: Path, protocol: int) -> None:
    written = write_cifar(tmp_path / "cifar-10-batches-py", per_batch=12, protocol=protocol)
    ds = data.load(DatasetConfig(name="cifar10", root=str(tmp_path)))

    assert (ds.num_classes, ds.in_channels, ds.image_size) == (10, 3, 32)
    assert ds.train.images.shape == (60, 3, 32, 32) and ds.test.images.shape == (12, 3, 32, 32)
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    assert ds.val is None
    train_pixels = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = [label for i in range(1, 6) for label in written[f"data_batch_{i}"][1]]
    assert ds.train.labels.tolist() == train_labels
    assert ds.test.labels.tolist() == written["test_batch"][1]
    # Rows are 1024 red, 1024 green, 1024 blue values, each plane row-major.
    i, c, h, w = 37, 2, 5, 30
    assert ds.train.images[i, c, h, w].item() == train_pixels[i, c * 1024 + h * 32 + w]
    assert np.array_equal(ds.train.images.reshape(60, -1).numpy(), train_pixels)
    assert np.array_equal(ds.test.images.reshape(12, -1).numpy(), written["test_batch"][0])


def test_cifar10_root_may_point_at_the_batch_folder(tmp_path: Path) -> None:
    written = write_cifar(tmp_path, per_batch=4)
    ds = data.load(DatasetConfig(name="cifar10", root=str(tmp_path)))
    assert ds.test.labels.tolist() == written["test_batch"][1]


def test_missing_cifar10_names_the_path_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "nowhere").mkdir()
    with pytest.raises(data.DatasetError) as info:
        data.load(DatasetConfig(name="cifar10", root=str(tmp_path / "nowhere")))
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "data_batch_1" in message and "test_batch" in message
    assert "download: true" in message and "cifar-10-python.tar.gz" in message


def test_partly_missing_cifar10_lists_only_the_missing_files(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cifar-10-batches-py", per_batch=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(data.DatasetError, match=r"lacks data_batch_3\."):
        data.load(DatasetConfig(name="cifar10", root=str(tmp_path)))


def test_corrupt_cifar10_batch_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, per_batch=2)
    (folder / "data_batch_2").write_bytes((folder / "data_batch_2").read_bytes()[:100])
    with pytest.raises(data.DatasetError, match="data_batch_2: not a CIFAR-10 python batch"):
        data.load(DatasetConfig(name="cifar10", root=str(tmp_path)))


def test_cifar10_batch_of_the_wrong_shape_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, per_batch=2)
    with (folder / "test_batch").open("wb") as file:
        pickle.dump({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, file, protocol=2)
    with pytest.raises(data.DatasetError, match=r"test_batch: .*uint8 \(N, 3072\)"):
        data.load(DatasetConfig(name="cifar10", root=str(tmp_path)))


class _RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar10_batch_cannot_run_code(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, per_batch=2)
    with (folder / "data_batch_1").open("wb") as file:
        pickle.dump({b"data": _RunsCode(), b"labels": []}, file, protocol=2)
    with pytest.raises(data.DatasetError, match=r"data_batch_1: .*unexpected object posix\.getcwd"):
        data.load(DatasetConfig(name="cifar10", root=str(tmp_path)))


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_files(tmp_path: Path, gz: bool) -> None:
    arrays = write_idx_dataset(tmp_path / "mnist", train=50, test=20, gz=gz)
    ds = data.load(DatasetConfig(name="mnist", root=str(tmp_path)))
    assert ds.train.images.shape == (50, 1, 28, 28) and ds.test.images.shape == (20, 1, 28, 28)
    assert (ds.in_channels, ds.image_size, ds.num_classes) == (1, 28, 10)
    assert np.array_equal(ds.train.images[:, 0].numpy(), arrays["train"][0])
    assert np.array_equal(ds.test.labels.numpy(), arrays["t10k"][1])
    assert ds.train.labels.dtype == torch.int64


def test_idx_files_directly_under_root_and_in_torchvision_layout(tmp_path: Path) -> None:
    flat = write_idx_dataset(tmp_path / "flat", train=30, test=10, gz=False)
    nested = write_idx_dataset(tmp_path / "tv" / "FashionMNIST" / "raw", train=40, test=10, gz=True)
    ds = data.load(DatasetConfig(name="mnist", root=str(tmp_path / "flat")))
    assert np.array_equal(ds.train.images[:, 0].numpy(), flat["train"][0])
    ds = data.load(DatasetConfig(name="fashion-mnist", root=str(tmp_path / "tv")))
    assert np.array_equal(ds.train.images[:, 0].numpy(), nested["train"][0])


def test_missing_mnist_names_the_folders(tmp_path: Path) -> None:
    with pytest.raises(data.DatasetError) as info:
        data.load(DatasetConfig(name="mnist", root=str(tmp_path)))
    assert str(tmp_path / "mnist") in str(info.value)
    assert "t10k-images-idx3-ubyte[.gz]" in str(info.value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: b"\x00\x00\x09\x03" + raw[4:], "not an IDX file of 3-D unsigned bytes"),
        (lambda raw: raw[:-5], "bytes of data where the header promises"),
    ],
)
def test_corrupt_idx_names_the_file(tmp_path: Path, damage, message: str) -> None:
    write_idx_dataset(tmp_path / "mnist", train=10, test=10, gz=False)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(data.DatasetError, match=message) as info:
        data.load(DatasetConfig(name="mnist", root=str(tmp_path)))
    assert str(path) in str(info.value)


def test_broken_gzip_names_the_file(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "mnist", train=10, test=10, gz=True)
    path = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(data.DatasetError, match="cannot read") as info:
        data.load(DatasetConfig(name="mnist", root=str(tmp_path)))
    assert str(path) in str(info.value)


def test_mismatched_idx_counts_are_rejected(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "mnist", train=10, test=10, gz=False)
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.zeros(9, np.uint8)))
    with pytest.raises(data.DatasetError, match=r"holds 9 labels but .* holds 10 images"):
        data.load(DatasetConfig(name="mnist", root=str(tmp_path)))


def test_fashion_mnist_from_the_debian_package(tmp_path: Path) -> None:
    config = DatasetConfig(
        name="fashion-mnist", root=str(tmp_path), train_subset=300, test_subset=200
    )
    ds = data.load(config)
    assert ds.train.images.shape == (300, 1, 28, 28) and ds.test.images.shape == (200, 1, 28, 28)
    assert (ds.num_classes, ds.in_channels, ds.image_size) == (10, 1, 28)
    # Stratified subsets of a balanced set: exactly 30 and 20 images per class.
    assert torch.bincount(ds.train.labels, minlength=10).tolist() == [30] * 10
    assert torch.bincount(ds.test.labels, minlength=10).tolist() == [20] * 10
    assert 0.2 < ds.mean.item() < 0.4 and 0.25 < ds.std.item() < 0.45


# --------------------------------------------------------------------------- synthetic


def synthetic(seed: int = 0, **shape) -> data.Datasets:
    config = DatasetConfig(name="synthetic", synthetic=SyntheticConfig(**shape))
    return data.load(config, seed=seed)


def test_synthetic_shape_and_class_balance() -> None:
    ds = synthetic(image_size=12, channels=1, num_classes=4, train_size=102, test_size=40)
    assert ds.train.images.shape == (102, 1, 12, 12) and ds.test.images.shape == (40, 1, 12, 12)
    assert (ds.num_classes, ds.in_channels, ds.image_size) == (4, 1, 12)
    assert torch.bincount(ds.train.labels).tolist() == [26, 26, 25, 25]
    assert torch.bincount(ds.test.labels).tolist() == [10] * 4


def test_synthetic_is_deterministic_in_the_seed() -> None:
    first, again = synthetic(seed=3), synthetic(seed=3)
    data.clear_cache()
    rebuilt, other = synthetic(seed=3), synthetic(seed=4)
    assert first is again and first is not rebuilt
    assert torch.equal(first.train.images, rebuilt.train.images)
    assert torch.equal(first.test.labels, rebuilt.test.labels)
    assert not torch.equal(first.train.images, other.train.images)


def test_synthetic_classes_differ_more_than_noise() -> None:
    # Learnability itself is tested with a network in the training tests; here: the class
    # means sit further apart than the noise blurs a single image's distance to its own mean.
    ds = synthetic(noise=0.5)
    x = ds.normalize(ds.train.images).flatten(1)
    means = torch.stack([x[ds.train.labels == k].mean(0) for k in range(10)])
    nearest = torch.cdist(x, means).argmin(1)
    assert (nearest == ds.train.labels).float().mean() > 0.9


# --------------------------------------------------------------------------- splits


def test_validation_and_subsets_are_sized_disjoint_and_stratified(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "mnist", train=600, test=100, gz=False)
    config = DatasetConfig(
        name="mnist", root=str(tmp_path), validation=100, train_subset=200, test_subset=50
    )
    ds = data.load(config, seed=1)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (200, 100, 50)
    train_ids, val_ids = set(identities(ds.train)), set(identities(ds.val))
    assert len(train_ids) == 200 and len(val_ids) == 100 and not train_ids & val_ids
    assert torch.bincount(ds.val.labels).tolist() == [10] * 10
    assert torch.bincount(ds.train.labels).tolist() == [20] * 10
    assert torch.bincount(ds.test.labels).tolist() == [5] * 10

    same = data.load(config.model_copy(update={"train_subset": None}), seed=1)
    assert identities(same.val) == identities(ds.val)  # validation ignores the subset size
    assert len(same.train) == 500 and not set(identities(same.train)) & val_ids
    other = data.load(config, seed=2)
    assert set(identities(other.val)) != val_ids


def test_normalisation_uses_the_training_split_statistics() -> None:
    ds = synthetic(channels=2, noise=0.3)
    pixels = ds.train.images.double() / 255
    assert torch.allclose(ds.mean.double(), pixels.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(ds.std.double(), pixels.std(dim=(0, 2, 3), correction=0), atol=1e-6)
    x = ds.normalize(ds.train.images)
    assert x.dtype == torch.float32 and x.shape == ds.train.images.shape
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3), correction=0), torch.ones(2), atol=1e-4)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"validation": 2048}, "validation=2048 leaves no training images"),
        ({"train_subset": 3000}, "train_subset=3000 exceeds the 2048 training images"),
        ({"validation": 100, "train_subset": 2000}, "exceeds the 1948 .* left after validation"),
        ({"test_subset": 513}, "test_subset=513 exceeds the 512 test images"),
    ],
)
def test_sizes_beyond_the_data_are_rejected(update: dict, message: str) -> None:
    config = DatasetConfig(name="synthetic").model_copy(update=update)
    with pytest.raises(data.DatasetError, match=message):
        data.load(config)


def test_images_are_stored_as_uint8() -> None:
    ds = synthetic(train_size=64, test_size=32)
    for split in (ds.train, ds.test):
        assert split.images.element_size() == 1
        assert split.images.untyped_storage().nbytes() >= split.images.numel()
        assert split.images.untyped_storage().nbytes() < 2 * split.images.numel()
    assert ds.mean.dtype == ds.std.dtype == torch.float32


def test_image_split_rejects_float_images() -> None:
    with pytest.raises(ValueError, match="images must be uint8"):
        data.ImageSplit(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="labels must be int64"):
        data.ImageSplit(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3))


def test_load_memoises_per_config_seed_and_device() -> None:
    config = DatasetConfig(name="synthetic", train_subset=100)
    first = data.load(config, seed=0)
    assert data.load(config, seed=0, device=torch.device("cpu")) is first
    assert data.load(config.model_copy(), seed=0) is first
    assert data.load(config, seed=1) is not first
    assert data.load(config.model_copy(update={"augment": True}), seed=0) is not first


# --------------------------------------------------------------------------- batches


def test_batches_cover_the_split_once_and_repeat_with_the_seed(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "mnist", train=100, test=10, gz=False)
    ds = data.load(DatasetConfig(name="mnist", root=str(tmp_path)))

    def epoch(seed: int, **options):
        generator = torch.Generator().manual_seed(seed)
        return list(ds.batches(ds.train, 32, shuffle=True, generator=generator, **options))

    batches = epoch(0)
    assert [len(y) for _, y in batches] == [32, 32, 32, 4]
    x = torch.cat([x for x, _ in batches])
    y = torch.cat([y for _, y in batches])
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    raw = torch.round((x * ds.std.view(-1, 1, 1) + ds.mean.view(-1, 1, 1)) * 255).to(torch.uint8)
    order = [int(a) + 256 * int(b) for a, b in raw[:, 0, 0, :2].tolist()]
    assert sorted(order) == list(range(100)) and order != list(range(100))
    assert torch.equal(y, ds.train.labels[torch.tensor(order)])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, epoch(0), strict=True))
    assert not torch.equal(batches[0][0], epoch(1)[0][0])
    assert [len(y) for _, y in epoch(0, drop_last=True)] == [32, 32, 32]


def test_unshuffled_batches_keep_the_order() -> None:
    ds = synthetic(train_size=50, test_size=20)
    batches = list(ds.batches(ds.test, 8, shuffle=False))
    assert torch.equal(torch.cat([y for _, y in batches]), ds.test.labels)
    assert torch.equal(batches[1][0], ds.normalize(ds.test.images[8:16]))
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(ds.batches(ds.test, 0, shuffle=False))


# --------------------------------------------------------------------------- augmentation


def crops_and_flips(image: torch.Tensor, padding: int) -> list[torch.Tensor]:
    """Every output the augmentation may give for one image, by plain slicing."""
    _, h, w = image.shape
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    crops = [
        padded[:, top : top + h, left : left + w]
        for top in range(2 * padding + 1)
        for left in range(2 * padding + 1)
    ]
    return crops + [crop.flip(-1) for crop in crops]


def test_random_crop_flip_gives_padded_crops_and_flips() -> None:
    seeded = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=seeded)
    out = data.random_crop_flip(images, padding=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    draws = []  # which of the 25 offsets x 2 flips each image got
    for source, result in zip(images, out, strict=True):
        matches = [i for i, c in enumerate(crops_and_flips(source, 2)) if torch.equal(result, c)]
        assert len(matches) == 1
        draws.append(matches[0])
    assert {d >= 25 for d in draws} == {False, True}  # both flipped and unflipped images
    assert len({d % 25 for d in draws}) > 15  # many different crop offsets
    assert (out != images).flatten(1).any(1).float().mean() > 0.8


def test_augmentation_is_deterministic_with_a_seeded_generator() -> None:
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)  # any content will do
    first = data.random_crop_flip(images, generator=torch.Generator().manual_seed(7))
    again = data.random_crop_flip(images, generator=torch.Generator().manual_seed(7))
    other = data.random_crop_flip(images, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_augmented_batches_are_deterministic_and_differ_from_plain_ones() -> None:
    ds = data.load(DatasetConfig(name="synthetic", augment=True))
    assert ds.augment

    def first_batch(seed: int, augment: bool) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        batches = ds.batches(ds.train, 64, shuffle=True, generator=generator, augment=augment)
        return next(iter(batches))[0]

    augmented = first_batch(0, True)
    assert augmented.shape == (64, 3, 16, 16) and augmented.dtype == torch.float32
    assert torch.equal(augmented, first_batch(0, True))
    assert not torch.equal(augmented, first_batch(0, False))
    assert not torch.equal(augmented, first_batch(1, True))
