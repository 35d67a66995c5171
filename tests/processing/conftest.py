"""Processing tests run single-threaded: their tensors are small, and thread hand-offs dominate on shared CPUs."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
