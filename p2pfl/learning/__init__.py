"""Torch-only learning core: models, datasets, partitioners, trainer, parameter utilities."""
