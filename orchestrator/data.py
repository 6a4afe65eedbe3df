"""Datasets held as uint8 tensors on the trial's device, normalised and augmented per batch.

Images stay uint8 NCHW on the device (CIFAR-10: 150 MB, not 600 MB of float32) and become
normalised float32 one batch at a time; CIFAR-style augmentation (random crop with padding,
horizontal flip) runs on the device on whole batches. :func:`load` memoises per process, so the
trials a worker runs share one copy.

Sources: ``cifar10`` (the python-pickle batches of ``cifar-10-python.tar.gz``), ``mnist`` and
``fashion-mnist`` (IDX files, gzipped or not), and ``synthetic`` (class prototypes plus noise,
generated from the seed). ``docs/data.md`` says where the files go.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import hashlib
import os
import pickle
import struct
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from orchestrator.config import DatasetConfig, SyntheticConfig

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "DatasetError",
    "Datasets",
    "ImageSplit",
    "clear_cache",
    "default_root",
    "load",
    "random_crop_flip",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs the IDX files."""

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_CACHE_SIZE = 4  # distinct (config, seed, device) entries kept; a sweep has a few seeds


class DatasetError(RuntimeError):
    """Dataset files that are missing or unreadable; the message names the path and the fix."""


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True, eq=False)  # tensors: compare by identity
class ImageSplit:
    """One split: uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)`` on one device.

    Shared between the trials of a process: treat the tensors as read-only.
    """

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be int64 ({self.images.shape[0]},), got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )
        if self.images.device != self.labels.device:
            raise ValueError(f"images on {self.images.device} but labels on {self.labels.device}")

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass(frozen=True, eq=False)  # tensors: compare by identity
class Datasets:
    """Train, test and optional validation splits with their normalisation statistics."""

    train: ImageSplit
    test: ImageSplit
    val: ImageSplit | None
    num_classes: int
    in_channels: int
    image_size: int
    mean: Tensor
    std: Tensor
    augment: bool

    @property
    def device(self) -> torch.device:
        return self.train.images.device

    @functools.cached_property
    def digest(self) -> str:
        """A hash of every image and label of every split: the same digest, the same data."""
        content = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            if split is not None:
                for tensor in (split.images, split.labels):
                    content.update(tensor.cpu().numpy().tobytes())
                content.update(b"|")
        return content.hexdigest()[:16]

    def profile(self) -> dict[str, int | str]:
        """Split sizes and the image shape, for a tracking store's dataset record."""
        return {
            "train": len(self.train),
            "validation": 0 if self.val is None else len(self.val),
            "test": len(self.test),
            "classes": self.num_classes,
            "shape": f"{self.in_channels}x{self.image_size}x{self.image_size}",
        }

    @functools.cached_property
    def _affine(self) -> tuple[Tensor, Tensor]:
        # (x / 255 - mean) / std as one multiply-add: x * scale + shift.
        scale = (1.0 / (255.0 * self.std)).view(-1, 1, 1)
        shift = (-self.mean / self.std).view(-1, 1, 1)
        return scale, shift

    def normalize(self, images_uint8: Tensor) -> Tensor:
        """uint8 images → float32, standardised per channel with the training statistics."""
        scale, shift = self._affine
        # One fused pass that reads uint8 and writes float32 (type promotion), no float copy.
        return torch.addcmul(shift, images_uint8, scale)

    def batches(
        self,
        split: ImageSplit,
        batch_size: int,
        *,
        shuffle: bool,
        generator: torch.Generator | None = None,
        augment: bool = False,
        drop_last: bool = False,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Normalised float32 ``x`` and int64 ``y`` batches of ``split``, on its device.

        ``generator`` (on the CPU or the data's device) seeds the shuffle and augmentation; the
        random draws for a whole pass are made up front, so a CPU generator costs one transfer
        per pass, not one per batch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        n = len(split)
        device = split.images.device
        order = _randperm(n, generator, device) if shuffle else None
        if augment:
            offsets, flips = _draw_crop_flip(n, _CROP_PADDING, generator, device)
        end = n - n % batch_size if drop_last else n
        for start in range(0, end, batch_size):
            stop = min(start + batch_size, n)
            if order is None:
                x, y = split.images[start:stop], split.labels[start:stop]
            else:
                index = order[start:stop]
                x, y = split.images[index], split.labels[index]
            if augment:
                x = _crop_flip(x, offsets[:, start:stop], flips[start:stop], _CROP_PADDING)
            yield self.normalize(x), y


# --------------------------------------------------------------------------- augmentation

_CROP_PADDING = 4  # the standard CIFAR recipe: pad 4, crop back to the original size


def random_crop_flip(
    images: Tensor, *, padding: int = _CROP_PADDING, generator: torch.Generator | None = None
) -> Tensor:
    """Random crop after zero ``padding`` plus random horizontal flip, for a whole batch.

    Works on any dtype and device without a per-image loop; the shape is unchanged.
    """
    offsets, flips = _draw_crop_flip(images.shape[0], padding, generator, images.device)
    return _crop_flip(images, offsets, flips, padding)


def _draw_crop_flip(
    n: int, padding: int, generator: torch.Generator | None, device: torch.device
) -> tuple[Tensor, Tensor]:
    """(row, column) crop offsets ``(2, n)`` in [0, 2 * padding] and flip flags ``(n,)``."""
    offsets = _randint(2 * padding + 1, (2, n), generator, device)
    flips = _randint(2, (n,), generator, device).bool()
    return offsets, flips


def _crop_flip(images: Tensor, offsets: Tensor, flips: Tensor, padding: int) -> Tensor:
    """Crop each image at its (row, column) ``offsets`` into the padded batch, then flip.

    One ``gather`` over flattened pixels: the index of each output pixel in the padded image is
    ``row * padded_width + column``, with columns reversed for flipped images.
    """
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    width = w + 2 * padding
    cols = torch.arange(w, device=images.device)
    cols = torch.where(flips[:, None], cols.flip(0), cols) + offsets[1, :, None]
    rows = torch.arange(h, device=images.device) + offsets[0, :, None]
    index = (rows[:, :, None] * width + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return padded.flatten(2).gather(2, index).view(n, c, h, w)


def _randint(
    high: int, size: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    where = generator.device if generator is not None else device
    return torch.randint(high, size, generator=generator, device=where).to(device)


def _randperm(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    where = generator.device if generator is not None else device
    return torch.randperm(n, generator=generator, device=where).to(device)


# --------------------------------------------------------------------------- loading

_cache: OrderedDict[tuple[str, int, str], Datasets] = OrderedDict()


def default_root() -> Path:
    """``$ORCHESTRATE_DATA``, else ``~/.cache/orchestrate/data``: where files go by default."""
    return Path(os.environ.get("ORCHESTRATE_DATA", "~/.cache/orchestrate/data")).expanduser()


def source_of(config: DatasetConfig) -> str:
    """Where the dataset's files are read from (``synthetic`` for generated data)."""
    if config.name == "synthetic":
        return "synthetic"
    return str(Path(config.root).expanduser() if config.root else default_root())


def clear_cache() -> None:
    """Forget every dataset :func:`load` has kept (frees their device memory)."""
    _cache.clear()
    _read_source.cache_clear()


def load(config: DatasetConfig, *, device: torch.device | str = "cpu", seed: int = 0) -> Datasets:
    """The datasets ``config`` describes, on ``device``; the same arguments return the same object.

    ``seed`` fixes the synthetic data and which images the subsets and the validation split take.
    Raises :class:`DatasetError` when files are missing or unreadable, or when the requested
    sizes exceed what the data holds.
    """
    device = _canonical(torch.device(device))
    key = (config.model_dump_json(), seed, str(device))
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    datasets = _build(config, device, seed)
    _cache[key] = datasets
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return datasets


def _canonical(device: torch.device) -> torch.device:
    # "cuda" and "cuda:0" name one device; key the cache by the explicit index.
    if device.type != "cpu" and device.index is None:
        module = getattr(torch, device.type, None)
        if module is not None and hasattr(module, "current_device"):
            return torch.device(device.type, module.current_device())
    return device


def _build(config: DatasetConfig, device: torch.device, seed: int) -> Datasets:
    if config.name == "synthetic":
        train, test = _synthetic(config.synthetic, seed)
        num_classes = config.synthetic.num_classes
    else:
        train, test = _read_source(config.name, Path(source_of(config)), config.download)
        num_classes = 10

    val_index, train_index = _training_indices(train[1], config, seed)
    test_index = None
    if config.test_subset is not None:
        if config.test_subset > len(test[1]):
            raise DatasetError(
                f"dataset.test_subset={config.test_subset} exceeds the {len(test[1])} test "
                f"images of {config.name}"
            )
        test_index = _stratified(test[1], config.test_subset, _rng(seed, "test_subset"))

    train_split = _split(train, train_index, device)
    mean, std = _channel_stats(train_split.images)
    _, channels, height, _ = train_split.images.shape
    return Datasets(
        train=train_split,
        test=_split(test, test_index, device),
        val=None if val_index is None else _split(train, val_index, device),
        num_classes=num_classes,
        in_channels=channels,
        image_size=height,
        mean=mean,
        std=std,
        augment=config.augment,
    )


def _training_indices(
    labels: Tensor, config: DatasetConfig, seed: int
) -> tuple[Tensor | None, Tensor | None]:
    """Indices of the validation and training images; ``None``: no validation / all images.

    The validation split is drawn first from all training images, so it does not depend on
    ``train_subset``; the subset is then drawn from the rest.
    """
    val_index = train_index = None
    if config.validation:
        if config.validation >= len(labels):
            raise DatasetError(
                f"dataset.validation={config.validation} leaves no training images: "
                f"{config.name} has {len(labels)}"
            )
        val_index = _stratified(labels, config.validation, _rng(seed, "validation"))
        keep = torch.ones(len(labels), dtype=torch.bool)
        keep[val_index] = False
        train_index = keep.nonzero().squeeze(1)
    if config.train_subset is not None:
        remaining = labels if train_index is None else labels[train_index]
        if config.train_subset > len(remaining):
            raise DatasetError(
                f"dataset.train_subset={config.train_subset} exceeds the {len(remaining)} "
                f"training images of {config.name}"
                + (" left after validation" if val_index is not None else "")
            )
        chosen = _stratified(remaining, config.train_subset, _rng(seed, "train_subset"))
        train_index = chosen if train_index is None else train_index[chosen]
    return val_index, train_index


def _split(arrays: tuple[Tensor, Tensor], index: Tensor | None, device: torch.device) -> ImageSplit:
    images, labels = arrays
    if index is not None:
        images, labels = images[index], labels[index]
    # Without an index, a CPU split shares storage with the cached source: no copy.
    return ImageSplit(images.to(device), labels.to(device))


def _rng(seed: int, purpose: str) -> torch.Generator:
    """An independent CPU stream per purpose, so e.g. the validation split ignores subsets."""
    digest = hashlib.sha256(f"{purpose}:{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _stratified(labels: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """Sorted indices of ``count`` labels, drawn at random and round-robin over the classes.

    Every class contributes equally (±1) until it runs out, so small subsets stay balanced.
    """
    n = len(labels)
    order = torch.randperm(n, generator=generator)
    shuffled = labels[order]
    by_class = torch.argsort(shuffled, stable=True)
    counts = torch.bincount(shuffled)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.int64)
    rank[by_class] = torch.arange(n) - first[shuffled[by_class]]
    # Rank within the class first, then the random position: one image per class per round.
    picked = torch.argsort(rank * n + torch.arange(n))[:count]
    return order[picked].sort().values


def _channel_stats(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std in [0, 1] units, in chunks so no float copy of all images."""
    total = torch.zeros(images.shape[1], dtype=torch.float64, device=images.device)
    squares = torch.zeros_like(total)
    for chunk in images.split(4096):
        values = chunk.float()
        total += values.sum(dim=(0, 2, 3), dtype=torch.float64)
        squares += values.square().sum(dim=(0, 2, 3), dtype=torch.float64)
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0.0).sqrt()
    # A constant channel would divide by zero; one grey level is the smallest meaningful spread.
    return (mean / 255).float(), (std / 255).clamp_min(1 / 255).float()


# --------------------------------------------------------------------------- synthetic


def _synthetic(config: SyntheticConfig, seed: int) -> tuple[tuple[Tensor, Tensor], ...]:
    """Smooth random class prototypes plus Gaussian pixel noise, quantised to uint8.

    Prototypes are drawn at a quarter of the resolution and upsampled, so they have the spatial
    structure convolutions pick up; ``noise`` is the noise std in units of the [0, 1] range.
    """
    generator = _rng(seed, "synthetic")
    side = config.image_size
    coarse = max(2, side // 4)
    prototypes = torch.rand(
        config.num_classes, config.channels, coarse, coarse, generator=generator
    )
    prototypes = F.interpolate(prototypes, size=(side, side), mode="bilinear", align_corners=False)

    def draw(size: int) -> tuple[Tensor, Tensor]:
        labels = torch.arange(size) % config.num_classes
        labels = labels[torch.randperm(size, generator=generator)]
        noise = torch.randn(size, config.channels, side, side, generator=generator)
        pixels = prototypes[labels] + config.noise * noise
        images = pixels.clamp_(0.0, 1.0).mul_(255).round_().to(torch.uint8)
        return images, labels

    return draw(config.train_size), draw(config.test_size)


# --------------------------------------------------------------------------- files


@functools.lru_cache(maxsize=2)  # the raw arrays of the sweep's dataset, read once
def _read_source(name: str, root: Path, download: bool) -> tuple[tuple[Tensor, Tensor], ...]:
    """The full train and test arrays of a file-backed dataset, on the CPU, read once."""
    if name == "cifar10":
        return _cifar10(root, download)
    if name in ("mnist", "fashion-mnist"):
        return _idx_dataset(name, root, download)
    raise DatasetError(f"unknown dataset '{name}'")


def _download(name: str, root: Path) -> None:
    """Fetch a dataset into ``root`` with torchvision (which verifies checksums)."""
    from torchvision import datasets

    source = {
        "cifar10": datasets.CIFAR10,
        "mnist": datasets.MNIST,
        "fashion-mnist": datasets.FashionMNIST,
    }[name]
    try:
        source(str(root), train=True, download=True)
    except Exception as exc:  # offline shows up as URLError, OSError or RuntimeError
        raise DatasetError(
            f"downloading {name} into {root} failed ({exc}); on a machine without internet "
            f"access put the files there by hand (docs/data.md)"
        ) from exc


# CIFAR-10: the python version, five training batches and one test batch of pickled dicts
# {b"data": uint8 (10000, 3072) with rows R(32x32) G(32x32) B(32x32), b"labels": [int]}.


def _cifar10(root: Path, download: bool) -> tuple[tuple[Tensor, Tensor], ...]:
    folder = _cifar_folder(root)
    missing = [name for name in (*_CIFAR_TRAIN, _CIFAR_TEST) if not (folder / name).is_file()]
    if missing and download:
        _download("cifar10", root)
        folder = _cifar_folder(root)
        missing = [name for name in (*_CIFAR_TRAIN, _CIFAR_TEST) if not (folder / name).is_file()]
    if missing:
        raise DatasetError(
            f"CIFAR-10 not found: {folder} lacks {', '.join(missing)}. Set dataset.download: "
            f"true on a machine with internet access, or download {CIFAR10_URL} and extract it "
            f"into {root} (it unpacks to {_CIFAR_DIR}/); dataset.root chooses another folder"
        )
    batches = [_cifar_batch(folder / name) for name in _CIFAR_TRAIN]
    train = (torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    return train, _cifar_batch(folder / _CIFAR_TEST)


def _cifar_folder(root: Path) -> Path:
    # torchvision's layout (root/cifar-10-batches-py/), or root pointing at the batches.
    if not (root / _CIFAR_DIR).is_dir() and (root / _CIFAR_TRAIN[0]).is_file():
        return root
    return root / _CIFAR_DIR


# numpy rebuilds arrays with _reconstruct (protocols 0-4) or _frombuffer (5), named under
# numpy.core (NumPy 1) or numpy._core (NumPy 2); take the functions from numpy itself.
_RECONSTRUCT = np.zeros(1).__reduce_ex__(4)[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes at protocol 2
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: a batch file cannot run code."""

    def find_class(self, module: str, name: str):
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}") from None


def _cifar_batch(path: Path) -> tuple[Tensor, Tensor]:
    fix = "delete it and extract the archive again (docs/data.md)"
    try:
        with path.open("rb") as file:
            batch = _ArrayUnpickler(file, encoding="bytes").load()
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as exc:
        raise DatasetError(f"{path}: not a CIFAR-10 python batch ({exc}); {fix}") from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3 * 32 * 32
        and labels is not None
        and len(labels) == data.shape[0]
    ):
        raise DatasetError(
            f"{path}: not a CIFAR-10 python batch (expected b'data' uint8 (N, 3072) and N "
            f"b'labels'); {fix}"
        )
    images = torch.from_numpy(np.ascontiguousarray(data)).view(-1, 3, 32, 32)
    return images, _checked_labels(torch.as_tensor(labels, dtype=torch.int64), path, fix)


def _checked_labels(labels: Tensor, path: Path, fix: str) -> Tensor:
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{path}: labels outside 0..9; {fix}")
    return labels


# MNIST and Fashion-MNIST: IDX files, big-endian header (0, 0, dtype 0x08 = ubyte, ndim),
# ndim uint32 sizes, then the bytes.


def _idx_folders(name: str, root: Path) -> list[Path]:
    """Where the four IDX files may be, in order: ours, torchvision's, root, Debian's."""
    if name == "mnist":
        return [root / "mnist", root / "MNIST" / "raw", root]
    return [root / "fashion-mnist", root / "FashionMNIST" / "raw", root, DEBIAN_FASHION_MNIST]


def _find_idx(folders: list[Path]) -> dict[str, Path] | None:
    # All four files from one folder, never a mix of sources.
    for folder in folders:
        paths = {}
        for stem in (*_IDX_FILES["train"], *_IDX_FILES["test"]):
            for candidate in (folder / stem, folder / f"{stem}.gz"):
                if candidate.is_file():
                    paths[stem] = candidate
                    break
        if len(paths) == 4:
            return paths
    return None


def _idx_dataset(name: str, root: Path, download: bool) -> tuple[tuple[Tensor, Tensor], ...]:
    folders = _idx_folders(name, root)
    paths = _find_idx(folders)
    if paths is None and download:
        _download(name, root)
        paths = _find_idx(folders)
    if paths is None:
        files = ", ".join(f"{stem}[.gz]" for stem in (*_IDX_FILES["train"], *_IDX_FILES["test"]))
        debian = (
            " or `apt-get install dataset-fashion-mnist` (Debian/Ubuntu),"
            if name == "fashion-mnist"
            else ""
        )
        raise DatasetError(
            f"{name} not found: none of {', '.join(map(str, folders))} holds all of {files}. "
            f"Set dataset.download: true on a machine with internet access,{debian} or copy "
            f"the four files into {folders[0]}"
        )
    splits = []
    for images_stem, labels_stem in (_IDX_FILES["train"], _IDX_FILES["test"]):
        images = _read_idx(paths[images_stem], ndim=3).unsqueeze(1)
        labels = _read_idx(paths[labels_stem], ndim=1).long()
        if len(labels) != len(images):
            raise DatasetError(
                f"{paths[labels_stem]} holds {len(labels)} labels but {paths[images_stem]} "
                f"holds {len(images)} images; copy a matching pair"
            )
        splits.append((images, _checked_labels(labels, paths[labels_stem], "copy it again")))
    return tuple(splits)


def _read_idx(path: Path, *, ndim: int) -> Tensor:
    """A uint8 IDX file (gzipped when its name ends in .gz) as a tensor of its shape."""
    fix = "delete it and copy or download it again"
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: cannot read ({exc}); {fix}") from None
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes((0, 0, 0x08, ndim)):
        raise DatasetError(f"{path}: not an IDX file of {ndim}-D unsigned bytes; {fix}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = int(np.prod(shape))
    if len(data) - header != count:
        raise DatasetError(
            f"{path}: {len(data) - header} bytes of data where the header promises {count} "
            f"{shape}; {fix}"
        )
    return torch.from_numpy(np.frombuffer(data, np.uint8, count, header).reshape(shape).copy())
