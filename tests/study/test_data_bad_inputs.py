"""Bad data sets in a study file: one line naming what was wrong and the fix, exit 2, nothing written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from automl.train.image_files import write_image_folder

from .test_bad_inputs import edited, run_refused

SYNTHETIC = 'dataset = "synthetic"'
SYNTHETIC_ARGS = "dataset_args = { shape = [1, 8, 8], n_train = 96, n_val = 48, n_test = 48, num_classes = 4 }"


def _folder(tmp_path: Path, change) -> Path:
    root = write_image_folder(tmp_path / "images", classes=2, train=3, test=2, size=(8, 8))
    change(root)
    return root


def _odd_size(root: Path) -> None:
    Image.new("RGB", (9, 8)).save(root / "train" / "class0" / "odd.png")


CASES = {
    "import": ('dataset = "nowhere_module:make"', "", r"dataset 'nowhere_module:make': no module named "
               r"'nowhere_module'; searched .*"),
    "raises": ('dataset = "sets:broken"', "", r"dataset 'sets:broken' raised ValueError: no data today"),
    "returns": ('dataset = "sets:one"', "", r"must return \(train, test\).*; it returned int"),
    "torchvision": ('dataset = "torchvision:CIFAR11"', "", r"torchvision has no data set 'CIFAR11'; did you mean "
                    r"CIFAR10 or CIFAR100 or"),
    "unknown": ('dataset = "mnist"', "", r"unknown dataset 'mnist'; valid: cifar10, .*torchvision:NAME or "
                r"package.module:callable"),
    "sizes": ('dataset = "imagefolder"', _odd_size, r"odd.png is 9x8 but .* is 8x8; set \[task\] dataset_args.size"),
    "one class": ('dataset = "imagefolder"', lambda root: shutil.rmtree(root / "train" / "class1"),
                  r"has 1 class folder\(s\) \(class0\); a classifier needs at least two"),
    "empty class": ('dataset = "imagefolder"', lambda root: (root / "train" / "class2").mkdir(),
                    r"the class folder .*class2 holds no image"),
    "test classes": ('dataset = "imagefolder"', lambda root: (root / "test" / "class1").rename(root / "test" / "x"),
                     r"classes of .*test differ from those of .*train \(not in both: class1, x\)"),
    # Issue 25, item 2: found in one pass before the first write, named, the others counted.
    "truncated and empty": ('dataset = "imagefolder"', lambda root: _unreadable(root),
                            r"cut.png cannot be read as an image .*\(and 1 other unreadable image\(s\)\); .*"
                            r"skip_unreadable = true"),
    "loop": ('dataset = "imagefolder"', lambda root: (root / "train" / "class0" / "loop").symlink_to(root / "train"),
             r"class0/loop links back to .*train, a folder it is inside"),
}


def _unreadable(root: Path) -> None:
    image = root / "train" / "class0" / "cut.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(image)
    image.write_bytes(image.read_bytes()[:40])
    (root / "train" / "class1" / "empty.jpg").write_bytes(b"")


@pytest.mark.parametrize("case", CASES)
def test_a_bad_data_set_is_one_line_and_writes_nothing(capsys, write_study, tmp_path, case):
    db = tmp_path / "studies.db"
    dataset, change, expected = CASES[case]
    (tmp_path / "sets.py").write_text("def broken():\n    raise ValueError('no data today')\n\n"
                                      "def one():\n    return 1\n")
    study = edited(write_study(), SYNTHETIC, dataset)
    if change:
        root = _folder(tmp_path, change)
        edited(study, SYNTHETIC_ARGS, f'data_root = "{root.as_posix()}"')
    else:
        edited(study, SYNTHETIC_ARGS, "")
    error = run_refused(capsys, db, study)
    assert re.search(expected, error), error
