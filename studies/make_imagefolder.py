"""Write the small image folder studies/imagefolder-example.toml trains on, so that it runs offline.

    python studies/make_imagefolder.py     # writes studies/imagefolder-example/{train,test}/CLASS/*.png
    automl run studies/imagefolder-example.toml

Four classes of 24x24 RGB images (a colour and a stripe pattern each, plus noise): 60 training and 15 test
images per class. Point [task] data_root at your own folder of the same layout to use your own images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from automl.train.image_files import write_image_folder

CLASSES, TRAIN, TEST, SIDE = 4, 60, 15, 24


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=str(Path(__file__).parent / "imagefolder-example"),
                        help="the folder to write (default: beside this script, where the study file's data_root "
                             "points)")
    args = parser.parse_args()
    root = write_image_folder(args.root, classes=CLASSES, train=TRAIN, test=TEST, size=(SIDE, SIDE))
    print(f"wrote {CLASSES * (TRAIN + TEST)} PNG images under {root}/train and {root}/test")


if __name__ == "__main__":
    main()
