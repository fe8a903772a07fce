"""Data sets from outside automl: an image folder, a ``torchvision.datasets`` class, a ``package.module:callable``.

Each becomes two torch Datasets of (C×H×W tensor, int label) handed to
:func:`automl.train.torch_data.from_torch`; every problem found on the way is a one-line UserError.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from automl.errors import UserError
from automl.imports import import_spec
from automl.train.splits import Dataset
from automl.train.torch_data import from_torch

__all__ = ["TORCHVISION_PREFIX", "load_callable", "load_imagefolder", "load_torchvision"]

TORCHVISION_PREFIX = "torchvision:"
CLOSE_MATCHES = 3
"""How many close names an unknown name's error offers."""


class ToTensor:
    """A PIL image as a uint8 tensor C×H×W, resized first to ``size`` (H, W) when given; picklable for workers."""

    def __init__(self, size: tuple[int, int] | None = None) -> None:
        self.size = size

    def __call__(self, image: Any) -> Tensor:
        from torchvision.transforms.v2 import functional as F  # deferred: torchvision is slow to import

        if self.size is not None:
            image = F.resize(image, list(self.size), antialias=True)
        return F.pil_to_tensor(image)


def _size(size: Any) -> tuple[int, int] | None:
    """``dataset_args.size`` as (H, W): one side for a square, or [H, W]."""
    if size is None:
        return None
    sides = [size] if isinstance(size, int) else size
    if (isinstance(sides, (str, bytes)) or not isinstance(sides, Sequence) or len(sides) not in (1, 2)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sides)):
        raise UserError(f"dataset option size must be a positive integer or [height, width], got size={size!r}")
    return (sides[0], sides[-1])


def load_imagefolder(*, root: Path, val_fraction: float, seed: int, device: torch.device, download: bool,
                     verify: bool, loader: str, size: Any = None) -> Dataset:
    """Images in ``root/train/CLASS/*`` and, when present, ``root/test/CLASS/*`` (PNG, JPEG), as RGB.

    Val is carved out of train by the seed; ``size`` (a side, or [H, W]) resizes every image, and is needed
    when the images are not all of one size.
    """
    from torchvision.datasets import ImageFolder  # deferred: torchvision is slow to import

    shape = _size(size)
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir():
        raise UserError(f"imagefolder: {train_dir} is not a folder; put the training images in "
                        f"{train_dir}/CLASS/*.png (one folder per class), or set [task] data_root")
    classes = _class_folders(train_dir)
    if test_dir.is_dir():
        test_classes = _class_folders(test_dir)
        if test_classes != classes:
            only = sorted(set(classes) ^ set(test_classes))
            raise UserError(f"imagefolder: the classes of {test_dir} differ from those of {train_dir} "
                            f"(not in both: {', '.join(only)}); give test the same class folders")
    if shape is None:
        _check_one_size(train_dir, test_dir)
    transform = ToTensor(shape)
    train = ImageFolder(str(train_dir), transform=transform)
    test = ImageFolder(str(test_dir), transform=transform) if test_dir.is_dir() else None
    return from_torch("imagefolder", train, test, num_classes=len(classes), val_fraction=val_fraction, seed=seed,
                      device=device, loader=loader)


def _images_in(folder: Path) -> list[Path]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)


def _class_folders(folder: Path) -> list[str]:
    """The class folders of ``folder``, each checked to hold at least one image; at least two of them."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise UserError(f"imagefolder: {folder} has {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
                        "a classifier needs at least two: one folder of images per class")
    for name in classes:
        if not _images_in(folder / name):
            raise UserError(f"imagefolder: the class folder {folder / name} holds no image (.png, .jpg, ...); "
                            "add images or remove the folder")
    return classes


def _check_one_size(*folders: Path) -> None:
    """Every image has the size of the first one (read from the file headers, not decoded)."""
    from PIL import Image

    first: tuple[Path, tuple[int, int]] | None = None
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in _images_in(folder):
            with Image.open(path) as image:
                size = image.size
            if first is None:
                first = (path, size)
            elif size != first[1]:
                raise UserError(f"imagefolder: {path} is {size[0]}x{size[1]} but {first[0]} is "
                                f"{first[1][0]}x{first[1][1]}; set [task] dataset_args.size = [height, width] "
                                "to resize them all")


def load_torchvision(name: str, *, root: Path, val_fraction: float, seed: int, device: torch.device,
                     download: bool, verify: bool, loader: str, size: Any = None) -> Dataset:
    """A ``torchvision.datasets`` class read from its own files under ``root`` (downloaded there when allowed):
    its train part and its test part, by ``train=`` or ``split=``."""
    cls = torchvision_class(name)
    params = inspect.signature(cls).parameters
    transform = ToTensor(_size(size))
    if "train" in params:
        parts = ({"train": True}, {"train": False})
    elif "split" in params:
        parts = ({"split": "train"}, {"split": "test"})
    else:
        raise UserError(f"torchvision:{name} has no train and test parts (no train= or split= argument); "
                        "wrap it in a package.module:callable that returns (train, test)")
    try:
        train, test = (cls(str(root), download=download, transform=transform, **part) for part in parts)
    except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
        raise UserError(f"torchvision:{name} not found under {root} ({exc}); place its files there, set "
                        "[task] data_root to where they are, or set download = true") from exc
    except OSError as exc:  # urllib's URLError included: offline, proxy, disk full
        raise UserError(f"could not download torchvision:{name} to {root} ({exc}); place its files there") from exc
    classes = getattr(train, "classes", None)
    return from_torch(f"{TORCHVISION_PREFIX}{name}", train, test, num_classes=len(classes) if classes else None,
                      val_fraction=val_fraction, seed=seed, device=device, loader=loader)


def torchvision_class(name: str) -> type:
    """The ``torchvision.datasets`` class called ``name``; another name is a UserError with the close ones."""
    from torchvision import datasets

    valid = [n for n in datasets.__all__ if isinstance(getattr(datasets, n, None), type)]
    if name not in valid:
        near = difflib.get_close_matches(name, valid, n=CLOSE_MATCHES, cutoff=0.5)
        hint = f"did you mean {' or '.join(near)}?" if near else f"valid: {', '.join(sorted(valid))}"
        raise UserError(f"torchvision has no data set {name!r}; {hint} (the classes of torchvision.datasets)")
    return getattr(datasets, name)


def load_callable(spec: str, *, folders: Sequence[Path] = (), root: Path, val_fraction: float, seed: int,
                  device: torch.device, download: bool, verify: bool, loader: str, **options: Any) -> Dataset:
    """``callable(**dataset_args)`` (``root=`` too when it takes one), which returns (train, test) torch Datasets
    of (C×H×W tensor, int label), ``test`` possibly None."""
    _, make = import_spec(spec, folders, "dataset", "(train, test)")
    params = inspect.signature(make).parameters
    takes_root = "root" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    try:
        made = make(**({"root": root} if takes_root else {}), **options)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"dataset {spec!r} raised {type(exc).__name__}: {exc}") from None
    if not (isinstance(made, (tuple, list)) and len(made) == 2):
        shown = f"a {type(made).__name__} of {len(made)}" if isinstance(made, (tuple, list)) else type(made).__name__
        raise UserError(f"dataset {spec!r} must return (train, test), two torch Datasets (test may be None); "
                        f"it returned {shown}")
    train, test = made
    return from_torch(spec, train, test, num_classes=None, val_fraction=val_fraction, seed=seed, device=device,
                      loader=loader)
