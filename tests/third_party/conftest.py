"""A third-party plugin package, installed by tests/test_third_party.py; its own tests run there, against it
installed, so the automl suite does not collect them."""

collect_ignore_glob = ["my-tricks/*"]
