"""Training tricks for automl: cutout, an exponential LR decay, gradient clipping by norm, a cosine schedule."""
