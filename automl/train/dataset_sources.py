"""Data sets from outside automl: an image folder, a ``torchvision.datasets`` class, a ``package.module:callable``.

Each becomes two torch Datasets of (C×H×W tensor, int label) handed to
:func:`automl.train.torch_data.from_torch`; every problem found on the way is a one-line UserError.
"""

from __future__ import annotations

import difflib
import inspect
import os
import warnings
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
                     verify: bool, loader: str, size: Any = None, skip_unreadable: bool = False) -> Dataset:
    """Images in ``root/train/CLASS/*`` and, when present, ``root/test/CLASS/*`` (PNG, JPEG), as RGB.

    Val is carved out of train by the seed; ``size`` (a side, or [H, W]) resizes every image, and is needed
    when the images are not all of one size. Every image is checked in one pass before anything is read:
    an unreadable one (truncated, empty, not an image) is refused, naming it and counting the others, or
    with ``skip_unreadable`` left out with one warning; a folder linked back into itself is refused; a file
    reached by two paths through links is read once.
    """
    from torchvision.datasets import ImageFolder  # deferred: torchvision is slow to import

    shape = _size(size)
    if not isinstance(skip_unreadable, bool):
        raise UserError(f"dataset option skip_unreadable must be true or false, got {skip_unreadable!r}")
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
    folders = [train_dir, *([test_dir] if test_dir.is_dir() else [])]
    readable = _readable_images(folders, classes, one_size=shape is None, skip=skip_unreadable)
    transform = ToTensor(shape)
    train = ImageFolder(str(train_dir), transform=transform, is_valid_file=readable.__contains__)
    test = (ImageFolder(str(test_dir), transform=transform, is_valid_file=readable.__contains__)
            if test_dir.is_dir() else None)
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


def _walk(folder: Path) -> list[tuple[str, str]]:
    """(path, real path) of the images under ``folder`` as torchvision's ImageFolder walks them (links
    followed), each real file once (its first path in sorted order); a folder linked back to one it is inside
    is refused."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    found: dict[str, str] = {}
    for top, dirs, files in os.walk(str(folder), followlinks=True):
        for name in dirs:
            link, target = os.path.join(top, name), os.path.realpath(os.path.join(top, name))
            if os.path.islink(link) and (os.path.realpath(top) + os.sep).startswith(target + os.sep):
                raise UserError(f"imagefolder: {link} links back to {target}, a folder it is inside: the same "
                                "images would be read again and again, and copies of training images would land "
                                "in validation; remove the link")
        for name in files:
            path = os.path.join(top, name)
            if os.path.splitext(name)[1].lower() in IMG_EXTENSIONS and os.path.isfile(path):
                real = os.path.realpath(path)
                found[real] = min(found.get(real, path), path)
    return sorted((path, real) for real, path in found.items())


def _readable_images(folders: list[Path], classes: list[str], *, one_size: bool, skip: bool) -> set[str]:
    """The paths of the images to read, over ``folders``' class folders: each file's header opened and its
    structure verified (not decoded), in one pass; all of one size unless resized."""
    readable: set[str] = set()
    seen: dict[str, tuple[str, str]] = {}
    bad: list[tuple[str, str]] = []
    first: list[tuple[str, tuple[int, int]]] = []
    for folder in folders:
        for name in classes:
            kept = 0
            for path, real in _walk(folder / name):
                if real in seen:
                    if seen[real][1] != name:
                        raise UserError(f"imagefolder: {path} and {seen[real][0]} are one file, through a link, "
                                        f"under classes {seen[real][1]} and {name}; an image has one label: "
                                        "remove the link")
                    continue  # in train and test through a link: kept in train only, never on both sides
                seen[real] = (path, name)
                size = _header(path, bad)
                if size is None:
                    continue
                if one_size and first and size != first[0][1]:
                    raise UserError(f"imagefolder: {path} is {size[0]}x{size[1]} but {first[0][0]} is "
                                    f"{first[0][1][0]}x{first[0][1][1]}; set [task] dataset_args.size = "
                                    "[height, width] to resize them all")
                first = first or [(path, size)]
                readable.add(path)
                kept += 1
            if not kept and (skip or not bad):
                raise UserError(f"imagefolder: no readable image is left in {folder / name} ({len(bad)} "
                                "unreadable left out); add images or remove the folder")
    if bad and not skip:
        others = f" (and {len(bad) - 1} other unreadable image(s))" if len(bad) > 1 else ""
        raise UserError(f"imagefolder: {bad[0][0]} cannot be read as an image ({bad[0][1]}){others}; replace or "
                        "remove it, or set [task] dataset_args = { skip_unreadable = true } to leave such files out")
    if bad:
        warnings.warn(f"imagefolder: left out {len(bad)} unreadable image(s) (skip_unreadable), the first "
                      f"{bad[0][0]}: {bad[0][1]}", UserWarning, stacklevel=2)
    return readable


def _header(path: str, bad: list[tuple[str, str]]) -> tuple[int, int] | None:
    """The image's size from its header, its structure verified; None (and ``path`` added to ``bad`` with
    the reason) when it is truncated, empty or not an image."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            size = image.size
            image.verify()
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ... by format
        bad.append((path, (str(exc).splitlines() or [type(exc).__name__])[0]))
        return None
    return size


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
