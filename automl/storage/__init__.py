"""Where studies live: storage URLs and opening them with clear errors."""

from automl.storage.urls import DEFAULT_STORAGE, database_exists, mask_url, open_storage, resolve_url

__all__ = ["DEFAULT_STORAGE", "database_exists", "mask_url", "open_storage", "resolve_url"]
