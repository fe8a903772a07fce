"""Tests of the in-memory data sets and their loader."""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from automl.errors import UserError
from automl.train.augment import default_padding
from automl.host import get_host
from automl.train.datasets import check_dataset_name, load_dataset
from automl.train.loader import InMemoryLoader
from automl.train.splits import Dataset, Split


def _raw(ds: Dataset, split: Split) -> torch.Tensor:
    """Undo the normalisation, back to the data set's own units."""
    mean = torch.tensor(ds.mean)[:, None, None]
    std = torch.tensor(ds.std)[:, None, None]
    return split.x.cpu() * std + mean


def _rows(x: torch.Tensor) -> list[bytes]:
    return [row.tobytes() for row in x.round().to(torch.uint8).flatten(1).numpy()]


# --------------------------------------------------------------------------- registry and options


def test_the_built_in_data_sets_are_registered_by_their_plugin():
    found = get_host().datasets
    assert {"cifar10", "cifar100", "digits", "imagefolder", "synthetic"} <= set(found)
    assert {found[name].plugin for name in ("cifar10", "digits", "imagefolder")} == {"datasets"}


def test_unknown_dataset_names_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown dataset 'cifar11'; valid: cifar10, cifar100, digits, imagefolder, "
                                        r"synthetic, torchvision:NAME or package.module:callable"):
        load_dataset("cifar11")


def test_the_name_check_is_a_value_error_for_validators():
    for name in ("digits", "torchvision:MNIST", "my_data.sets:make"):
        assert check_dataset_name(name) == name
    with pytest.raises(ValueError, match=r"dataset 'not a name' must be a data set's name"):
        check_dataset_name("not a name")


def test_devices_are_parsed_by_the_one_device_parser():
    assert load_dataset("digits", device=torch.device("cpu")).train.x.device.type == "cpu"
    assert load_dataset("digits", device="auto").train.x.device.type in ("cpu", "cuda")
    with pytest.raises(UserError, match=r"unknown device 'gpu0'; use auto, cpu, cuda or cuda:N"):
        load_dataset("digits", device="gpu0")
    with pytest.raises(UserError, match=r"device 'meta' is not supported; use auto, cpu, cuda or cuda:N"):
        load_dataset("digits", device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="'cuda:0' asked for, but no CUDA GPU is visible"):
            load_dataset("digits", device="cuda:0")


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(UserError, match=r"'colour'.*'synthetic'.*valid: data_seed, n_test, n_train, n_val, noise"):
        load_dataset("synthetic", colour=True)
    with pytest.raises(UserError, match=r"'noise'.*'digits'.*valid: none"):
        load_dataset("digits", noise=1.0)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_val_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(UserError, match="val_fraction"):
        load_dataset("digits", val_fraction=fraction)


def test_bad_synthetic_options_are_refused():
    with pytest.raises(UserError, match="shape"):
        load_dataset("synthetic", shape=(3, 16))
    with pytest.raises(UserError, match="num_classes"):
        load_dataset("synthetic", num_classes=1)


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


def test_digits_shapes_and_sizes(digits):
    assert digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert len(digits.test) == round(1797 * 0.2)
    assert len(digits.val) == round((1797 - len(digits.test)) * 0.1)
    for split in (digits.train, digits.val, digits.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.shape[1:] == (1, 8, 8)


def test_digits_splits_are_disjoint_and_cover_the_data(digits):
    from sklearn.datasets import load_digits

    rows = {name: _rows(_raw(digits, getattr(digits, name))) for name in ("train", "val", "test")}
    seen = rows["train"] + rows["val"] + rows["test"]
    assert len(set(seen)) == len(seen) == 1797, "a sample sits in two splits"
    original = {r.tobytes() for r in load_digits().images.astype(np.uint8).reshape(1797, -1)}
    assert set(seen) == original


def test_digits_test_split_does_not_depend_on_seed(digits):
    other = load_dataset("digits", seed=1)
    # Same images; the normalised values differ slightly, as the train statistics do.
    assert _rows(_raw(digits, digits.test)) == _rows(_raw(other, other.test))
    assert torch.equal(digits.test.y, other.test.y)
    assert set(_rows(_raw(digits, digits.val))) != set(_rows(_raw(other, other.val)))


def test_digits_normalised_with_train_statistics(digits):
    mean = digits.train.x.mean(dim=(0, 2, 3))
    std = digits.train.x.std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros(1), atol=1e-5)
    assert torch.allclose(std, torch.ones(1), atol=1e-5)
    # The val images did not contribute: their mean is not forced to zero.
    assert abs(digits.val.x.mean().item()) > 1e-4


# --------------------------------------------------------------------------- CIFAR on disk


def _write_cifar10(root: Path, per_batch: int = 6, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny CIFAR-10 in the official layout: pickled dicts of (N, 3072) uint8 rows, channel-major."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"batch_label": f"training batch {i} of 5", "labels": y, "data": x,
                         "filenames": [f"img{i}_{j}.png" for j in range(per_batch)]}, f, protocol=2)
        train_x.append(x)
        train_y += y
    test_x = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_y = rng.integers(0, 10, n_test).tolist()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"batch_label": "testing batch 1 of 1", "labels": test_y, "data": test_x,
                     "filenames": [f"test{j}.png" for j in range(n_test)]}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)], "num_cases_per_batch": per_batch,
                     "num_vis": 3072}, f, protocol=2)
    return {"train_x": np.concatenate(train_x), "train_y": np.array(train_y),
            "test_x": test_x, "test_y": np.array(test_y)}


def _write_cifar100(root: Path, n_train: int = 30, n_test: int = 10, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    written = {}
    for part, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        with open(folder / part, "wb") as f:
            pickle.dump({"filenames": [f"{part}{j}.png" for j in range(n)], "batch_label": part,
                         "fine_labels": fine, "coarse_labels": [k // 5 for k in fine], "data": x}, f, protocol=2)
        written[f"{part}_x"], written[f"{part}_y"] = x, np.array(fine)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"fine{k}" for k in range(100)],
                     "coarse_label_names": [f"coarse{k}" for k in range(20)]}, f, protocol=2)
    return written


def _check_cifar(ds: Dataset, written: dict[str, np.ndarray], num_classes: int) -> None:
    assert ds.num_classes == num_classes
    assert ds.input_shape == (3, 32, 32)
    # The official test set, in its own order, pixel for pixel (rows are channel-major: CHW).
    expected = torch.from_numpy(written["test_x"].reshape(-1, 3, 32, 32)).float()
    restored = _raw(ds, ds.test)
    assert (restored - expected).abs().max() < 1e-3
    assert torch.equal(ds.test.y, torch.from_numpy(written["test_y"]).long())
    # Train and val share out the official train set, each image with its label.
    label_of = dict(zip(_rows(torch.from_numpy(written["train_x"]).float()), written["train_y"].tolist()))
    got = []
    for split in (ds.train, ds.val):
        raw = _raw(ds, split)
        assert (raw - raw.round()).abs().max() < 1e-3
        for row, label in zip(_rows(raw), split.y.tolist()):
            assert label_of[row] == label
            got.append(row)
    assert sorted(got) == sorted(label_of)
    assert len(ds.val) == round(len(label_of) * 0.2)


def test_tiny_cifar10_loads_pixel_exactly_through_torchvision(tmp_path):
    written = _write_cifar10(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path, download=False, verify=False, val_fraction=0.2)
    _check_cifar(ds, written, num_classes=10)


def test_tiny_cifar100_loads_pixel_exactly_through_torchvision(tmp_path):
    written = _write_cifar100(tmp_path)
    ds = load_dataset("cifar100", root=str(tmp_path), download=False, verify=False, val_fraction=0.2)
    _check_cifar(ds, written, num_classes=100)


def test_unofficial_cifar_files_fail_verification(tmp_path):
    _write_cifar10(tmp_path)
    with pytest.raises(UserError, match="md5.*verify = false"):
        load_dataset("cifar10", root=tmp_path, download=False, verify=True)


def test_missing_cifar_offline_names_the_root_and_the_fix(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(UserError, match="cifar-10-batches-py") as info:
        load_dataset("cifar10", root=root, download=False)
    assert str(root) in str(info.value) and "data_root" in str(info.value)


def test_root_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOML_DATA", str(tmp_path / "from-env"))
    with pytest.raises(UserError, match="from-env"):
        load_dataset("cifar100", download=False)
    written = _write_cifar100(tmp_path / "from-env")
    _check_cifar(load_dataset("cifar100", download=False, verify=False, val_fraction=0.2), written, 100)


def test_failed_download_is_a_user_error(tmp_path, monkeypatch):
    import torchvision.datasets.cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(UserError, match=f"could not download cifar10 to {tmp_path}.*no network"):
        load_dataset("cifar10", root=tmp_path, download=True)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_test_set_ignores_the_seed():
    a = load_dataset("synthetic", shape=[2, 8, 8], n_train=40, n_val=10, n_test=20)
    b = load_dataset("synthetic", shape=[2, 8, 8], n_train=40, n_val=10, n_test=20)
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(a, part).x, getattr(b, part).x)
        assert torch.equal(getattr(a, part).y, getattr(b, part).y)
    assert a.input_shape == (2, 8, 8)
    assert (len(a.train), len(a.val), len(a.test)) == (40, 10, 20)
    other_seed = load_dataset("synthetic", shape=[2, 8, 8], n_train=40, n_val=10, n_test=20, seed=5)
    assert torch.allclose(_raw(a, a.test), _raw(other_seed, other_seed.test), atol=1e-4)
    assert torch.equal(a.test.y, other_seed.test.y)
    other_data = load_dataset("synthetic", shape=[2, 8, 8], n_train=40, n_val=10, n_test=20, data_seed=1)
    assert not torch.allclose(_raw(a, a.test), _raw(other_data, other_data.test), atol=1e-1)


def test_synthetic_is_learnable():
    ds = load_dataset("synthetic")
    assert ds.input_shape == (3, 16, 16) and ds.num_classes == 10
    # Nearest class mean of the training images, scored on the test images.
    means = torch.stack([ds.train.x[ds.train.y == k].mean(0) for k in range(10)]).flatten(1)
    predicted = torch.cdist(ds.test.x.flatten(1), means).argmin(1)
    accuracy = (predicted == ds.test.y).float().mean().item()
    assert accuracy > 0.5, f"accuracy {accuracy:.2f} is too close to chance (0.10)"


# --------------------------------------------------------------------------- loader


def _indexed_split(n: int = 50, device: str = "cpu") -> Split:
    # Each image is constant and equal to its label, so a batch shows which samples it holds.
    y = torch.arange(n, device=device)
    return Split(y.float()[:, None, None, None].expand(n, 1, 4, 4).contiguous(), y)


def test_loader_yields_every_sample_once_per_epoch_and_reshuffles():
    loader = InMemoryLoader(_indexed_split(), 8, drop_last=False, seed=0)
    assert len(loader) == 7
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == 7
        order = torch.cat([yb for _, yb in batches])
        assert sorted(order.tolist()) == list(range(50))
        epochs.append(order)
    assert not torch.equal(epochs[0], epochs[1])


def test_loader_is_reproducible_from_its_seed():
    first = torch.cat([yb for _, yb in InMemoryLoader(_indexed_split(), 8, seed=3)])
    again = torch.cat([yb for _, yb in InMemoryLoader(_indexed_split(), 8, seed=3)])
    assert torch.equal(first, again)


def test_loader_drop_last_and_changed_batch_size():
    loader = InMemoryLoader(_indexed_split(50), 16)
    assert len(loader) == 3
    assert [len(yb) for _, yb in loader] == [16, 16, 16]
    loader.batch_size = 7
    assert len(loader) == 7
    assert [len(yb) for _, yb in loader] == [7] * 7
    loader.batch_size = 64  # bigger than the split: one batch of all of it, not none
    assert len(loader) == 1
    assert [len(yb) for _, yb in loader] == [50]
    with pytest.raises(UserError, match="batch_size"):
        loader.batch_size = 0


def test_loader_without_shuffle_keeps_order():
    order = torch.cat([yb for _, yb in InMemoryLoader(_indexed_split(), 8, shuffle=False, drop_last=False)])
    assert order.tolist() == list(range(50))


def test_loader_pads_by_the_one_default_rule():
    for side in (4, 8, 32):
        split = Split(torch.zeros(2, 1, side, side), torch.zeros(2, dtype=torch.long))
        assert InMemoryLoader(split, 2, augment=True).padding == default_padding(side)
    assert InMemoryLoader(_indexed_split(), 8, padding=0).padding == 0


def test_loader_augments_each_batch_without_mixing_samples():
    loader = InMemoryLoader(_indexed_split(), 10, augment=True, padding=2)
    for xb, yb in loader:
        assert xb.shape == (10, 1, 4, 4)
        # Crops and flips of a constant image leave it constant.
        assert torch.equal(xb, yb.float()[:, None, None, None].expand_as(xb))


def test_loader_flip_can_be_switched_off():
    # Rows that differ left to right: any flip would show.
    split = Split(torch.arange(4.0).expand(64, 1, 4, 4).contiguous(), torch.zeros(64, dtype=torch.long))
    flipped = torch.cat([xb for xb, _ in InMemoryLoader(split, 16, augment=True, padding=0, flip=True)])
    assert not torch.equal(flipped, split.x)
    kept = torch.cat([xb for xb, _ in InMemoryLoader(split, 16, augment=True, padding=0, flip=False)])
    assert torch.equal(kept, split.x)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_loader_stays_on_the_split_device(device):
    loader = InMemoryLoader(_indexed_split(device=device), 8, augment=True, padding=1)
    for xb, yb in loader:
        assert xb.device.type == device and yb.device.type == device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_dataset_loads_to_cuda():
    ds = load_dataset("digits", device="cuda")
    assert ds.train.x.is_cuda and ds.test.y.is_cuda
    cpu = load_dataset("digits")
    assert torch.allclose(ds.test.x.cpu(), cpu.test.x, atol=1e-5)
