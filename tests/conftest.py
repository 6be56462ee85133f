"""Shared fixtures: keep torch single-threaded and deterministic across tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
