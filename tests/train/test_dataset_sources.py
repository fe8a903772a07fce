"""Data sets from outside automl, read from real files: an image folder of PNGs, torchvision's MNIST from its
idx files, a package.module:callable; the in-memory and streamed loaders giving the same batches; bad input."""

from __future__ import annotations

import struct
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from automl.budget import Budget
from automl.errors import UserError
from automl.testing import run_for, tiny_settings
from automl.train.datasets import load_dataset
from automl.train.image_files import write_image_folder
from automl.train.loader import Loader
from automl.train.loop import evaluate, train
from automl.train.models import build_model
from automl.train.torch_data import MEMORY_LOADER_MAX_BYTES, choose_loader

pytestmark = pytest.mark.usefixtures("one_thread")  # one thread: the same run gives the same bits


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("images"), classes=3, train=24, test=8, size=(12, 10))


@pytest.fixture(scope="module")
def both(folder):
    """The image folder loaded by each loader, with the same seed."""
    return {kind: load_dataset("imagefolder", root=folder, seed=3, loader=kind) for kind in ("memory", "stream")}


def test_an_image_folder_loads_with_its_classes_val_carved_out_of_train_and_its_test_split(both):
    data = both["memory"]
    assert (data.loader, data.num_classes, data.input_shape) == ("memory", 3, (3, 12, 10))
    assert (len(data.train), len(data.val), len(data.test)) == (65, 7, 24)  # val: a tenth of the 72 train images
    assert sorted(data.test.y.tolist()) == [0] * 8 + [1] * 8 + [2] * 8
    assert data.decode_seconds > 0
    assert both["stream"].loader == "stream"


def test_a_size_resizes_every_image(folder):
    data = load_dataset("imagefolder", root=folder, size=[8, 6])
    assert data.input_shape == (3, 8, 6) and data.train.x.shape[1:] == (3, 8, 6)


def test_the_streaming_and_in_memory_loaders_give_the_same_batches_to_the_bit(both):
    memory, stream = (Loader(both[k].train, 16, augment=True, seed=5) for k in ("memory", "stream"))
    for epoch in range(2):
        if epoch:
            memory.batch_size = stream.batch_size = 24  # batch_ramp's change between passes
        pairs = list(zip(memory, stream, strict=True))
        assert len(pairs) == 65 // (16 if epoch == 0 else 24)
        for (xm, ym), (xs, ys) in pairs:
            assert xm.shape == xs.shape and torch.equal(ym, ys) and torch.equal(xm, xs)
    assert memory.wait_seconds >= 0 and stream.wait_seconds > 0
    assert both["memory"].mean == both["stream"].mean and both["memory"].std == both["stream"].std


def test_the_same_weights_score_the_same_validation_error_on_either_loader(both):
    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=3, num_classes=3, width=0.25).eval()  # untrained: errs often
    errors, scores = {}, {}
    for kind, loaded in both.items():
        run = run_for(model, data=both["memory"])  # its loader is not used: evaluation reads the split given
        errors[kind] = (evaluate(run, loaded.val, batch_size=4), evaluate(run, loaded.test, batch_size=5))
        with torch.no_grad():
            scores[kind] = torch.cat([model(x) for x, _ in loaded.val.batches(4)])
    assert errors["memory"] == errors["stream"]
    assert torch.equal(scores["memory"], scores["stream"])
    assert 0 < errors["memory"][1][0] < 1  # not a trivial score: some right, some wrong


def test_a_study_trains_on_a_streamed_split(both):
    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=3, num_classes=3, width=0.25)
    result = train(model, both["stream"], tiny_settings(batch_size=16), Budget(2, "epochs"), evaluate_test=True)
    assert result.steps == 8 and 0 <= result.data_wait_fraction <= 1 and result.data_wait_seconds > 0
    assert result.test_error is not None and result.inference is not None


def test_the_loader_is_chosen_by_size_unless_asked():
    assert choose_loader("auto", MEMORY_LOADER_MAX_BYTES) == "memory"
    assert choose_loader("auto", MEMORY_LOADER_MAX_BYTES + 1) == "stream"
    assert choose_loader("stream", 1) == "stream" and choose_loader("memory", 2**40) == "memory"
    with pytest.raises(UserError, match="is held in memory; loader = 'stream' is for imagefolder"):
        load_dataset("digits", loader="stream")


# --------------------------------------------------------------------------- torchvision, from its own files


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An array in the idx format MNIST ships in (big-endian sizes after a magic of type and rank)."""
    path.write_bytes(struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
                     + array.astype(np.uint8).tobytes())


def test_torchvision_mnist_is_read_from_its_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = {"train": np.arange(40) % 10, "t10k": np.arange(20) % 10}
    for prefix, y in labels.items():
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (len(y), 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    data = load_dataset("torchvision:MNIST", root=tmp_path, download=False, val_fraction=0.25)
    assert (data.num_classes, data.input_shape, len(data.train), len(data.val), len(data.test)) == (
        10, (1, 28, 28), 30, 10, 20)
    assert data.test.y.tolist() == labels["t10k"].tolist()
    assert data.name == "torchvision:MNIST"


def test_a_torchvision_dataset_that_is_not_there_says_where_it_looked(tmp_path):
    with pytest.raises(UserError, match=r"torchvision:FashionMNIST not found under .*set download = true"):
        load_dataset("torchvision:FashionMNIST", root=tmp_path, download=False)


def test_an_unknown_torchvision_name_gives_the_close_matches():
    with pytest.raises(UserError, match=r"torchvision has no data set 'MINST'; did you mean MNIST or QMNIST or KMNIST\? \(the classes of "
                                        r"torchvision.datasets\)$"):
        load_dataset("torchvision:MINST")


# --------------------------------------------------------------------------- package.module:callable


CALLABLES = '''
import torch
from torch.utils.data import TensorDataset

def make(n=40, root=None):
    x = torch.arange(n * 3 * 4 * 4, dtype=torch.float32).reshape(n, 3, 4, 4) % 7
    return TensorDataset(x, torch.arange(n) % 4), None

def raises():
    raise RuntimeError("no such bucket")

def three():
    return 1, 2, 3

def flat_images():
    return TensorDataset(torch.zeros(8, 48), torch.zeros(8, dtype=torch.long)), None

def other_test_classes():
    x = torch.rand(30, 3, 4, 4)
    return TensorDataset(x, torch.arange(30) % 3), TensorDataset(x[:12], torch.arange(12) % 6)
'''


@pytest.fixture
def module_folder(tmp_path) -> Path:
    (tmp_path / "my_sets.py").write_text(textwrap.dedent(CALLABLES))
    return tmp_path


def test_a_callable_in_the_study_folder_gives_the_data_set(module_folder):
    data = load_dataset("my_sets:make", folders=[module_folder], n=60)
    assert (data.num_classes, data.input_shape, len(data.train) + len(data.val), len(data.test)) == (4, (3, 4, 4), 60, 0)


@pytest.mark.parametrize("spec, expected", [
    ("not_a_module_here:make", r"no module named 'not_a_module_here'; searched .*"),
    ("my_sets:missing", r"module 'my_sets' \(.*my_sets.py\) has no 'missing'"),
    ("my_sets:raises", r"dataset 'my_sets:raises' raised RuntimeError: no such bucket"),
    ("my_sets:three", r"must return \(train, test\), two torch Datasets \(test may be None\); it returned a tuple of 3"),
    ("my_sets:flat_images", r"the train split's images must be tensors C×H×W, got a tensor of shape \(48,\)"),
    # Issue 25, item 3: the image folder's rule, for a callable too.
    ("my_sets:other_test_classes", r"the test split has label\(s\) 3, 4, 5 that no training image has \(train "
                                   r"labels 0 to 2\)"),
])
def test_a_bad_callable_says_what_was_wrong(module_folder, spec, expected):
    with pytest.raises(UserError, match=expected):
        load_dataset(spec, folders=[module_folder])


# --------------------------------------------------------------------------- bad image folders


def test_images_of_different_sizes_need_a_size(tmp_path):
    root = write_image_folder(tmp_path, classes=2, train=3, test=0, size=(8, 8))
    Image.new("RGB", (9, 8)).save(root / "train" / "class1" / "odd.png")
    with pytest.raises(UserError, match=r"odd.png is 9x8 but .* is 8x8; set \[task\] dataset_args.size"):
        load_dataset("imagefolder", root=root)
    assert load_dataset("imagefolder", root=root, size=8).input_shape == (3, 8, 8)


def test_a_folder_of_one_class_or_an_empty_class_is_refused(tmp_path):
    root = write_image_folder(tmp_path, classes=1, train=3, test=0)
    with pytest.raises(UserError, match=r"has 1 class folder\(s\) \(class0\); a classifier needs at least two"):
        load_dataset("imagefolder", root=root)
    (root / "train" / "empty").mkdir()
    with pytest.raises(UserError, match=r"the class folder .*empty holds no image"):
        load_dataset("imagefolder", root=root)


def test_a_test_split_with_other_classes_is_refused(tmp_path):
    root = write_image_folder(tmp_path, classes=3, train=3, test=2)
    (root / "test" / "class2").rename(root / "test" / "other")
    with pytest.raises(UserError, match=r"classes of .*test differ from those of .*train \(not in both: class2, other\)"):
        load_dataset("imagefolder", root=root)


def test_a_missing_train_folder_says_where_the_images_go(tmp_path):
    with pytest.raises(UserError, match=r"imagefolder: .*train is not a folder; put the training images in"):
        load_dataset("imagefolder", root=tmp_path)


# Issue 25, item 2: unreadable files and links, found in one pass before anything is read --------------


def _truncated_png(path: Path) -> Path:
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_unreadable_images_are_named_and_counted_or_left_out_when_asked(tmp_path):
    root = write_image_folder(tmp_path, classes=2, train=6, test=0, size=(8, 8))
    _truncated_png(root / "train" / "class0" / "cut.png")
    (root / "train" / "class1" / "empty.jpg").write_bytes(b"")
    with pytest.raises(UserError) as info:
        load_dataset("imagefolder", root=root)
    message = str(info.value)
    assert "cut.png cannot be read as an image" in message and "(and 1 other unreadable image(s))" in message
    assert "skip_unreadable = true" in message and "\n" not in message
    with pytest.warns(UserWarning, match=r"left out 2 unreadable image\(s\)"):
        data = load_dataset("imagefolder", root=root, skip_unreadable=True)
    assert len(data.train) + len(data.val) == 12  # the 12 good images, not the 2 bad ones
    with pytest.raises(UserError, match="skip_unreadable must be true or false"):
        load_dataset("imagefolder", root=root, skip_unreadable="yes")


def test_a_folder_linked_back_into_itself_is_refused(tmp_path):
    root = write_image_folder(tmp_path, classes=2, train=4, test=0, size=(8, 8))
    (root / "train" / "class0" / "loop").symlink_to(root / "train")
    with pytest.raises(UserError, match=r"class0/loop links back to .*train, a folder it is inside"):
        load_dataset("imagefolder", root=root)


def test_a_file_reached_by_two_links_is_read_once_and_never_on_both_sides_of_the_split(tmp_path):
    root = write_image_folder(tmp_path / "images", classes=2, train=4, test=2, size=(8, 8))
    extra = write_image_folder(tmp_path / "extra", classes=1, train=3, test=0, size=(8, 8), seed=5) / "train" / "class0"
    (root / "train" / "class0" / "one").symlink_to(extra)
    (root / "train" / "class0" / "two").symlink_to(extra)  # the same 3 files by a second path
    (root / "test" / "class0" / "leak.png").symlink_to(next((root / "train" / "class0").glob("*.png")))
    data = load_dataset("imagefolder", root=root, seed=1)
    assert len(data.train) + len(data.val) == 11 and len(data.test) == 4  # 8 + 3 once; test keeps its own 4
    pixels = {bytes(x.numpy().tobytes()) for x in torch.cat([data.train.x, data.val.x, data.test.x])}
    assert len(pixels) == 15  # every image once, none of them on two sides
    (root / "train" / "class1" / "three").symlink_to(extra)
    with pytest.raises(UserError, match=r"are one file, through a link, under classes class0 and class1"):
        load_dataset("imagefolder", root=root)
