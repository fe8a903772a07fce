"""The budgeted training loop and what it trains on: data sets, loaders, augmentation, models, settings."""
