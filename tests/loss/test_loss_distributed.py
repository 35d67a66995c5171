"""The mask-count normaliser is all-reduced across processes (two gloo processes on CPU)."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mask2former.loss import Mask2FormerCriterion, num_masks_normalizer

# targets per image on each rank: rank 0 has 3 + 0, rank 1 has 2 + 2 + 1 -> global mean (3 + 5) / 2 = 4
COUNTS = {0: (3, 0), 1: (2, 2, 1)}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        labels = [torch.zeros(n, dtype=torch.int64) for n in COUNTS[rank]]
        assert num_masks_normalizer(labels, "cpu").item() == 4.0
        # fewer than one mask per process on average is clamped to 1
        few = [torch.zeros(1, dtype=torch.int64)] if rank == 0 else [torch.zeros(0, dtype=torch.int64)]
        assert num_masks_normalizer(few, "cpu").item() == 1.0

        # the criterion uses the global normaliser: its mask terms are those of a local run scaled by local / global
        criterion = Mask2FormerCriterion(num_labels=3, train_num_points=32)
        batch = len(COUNTS[rank])
        gen = torch.Generator().manual_seed(rank)
        class_logits = [torch.randn(batch, 4, 4, generator=gen)]
        mask_logits = [torch.randn(batch, 4, 8, 8, generator=gen)]
        masks = [torch.rand(n, 16, 16, generator=gen) > 0.5 for n in COUNTS[rank]]
        torch.manual_seed(0)
        distributed = criterion(class_logits, mask_logits, masks, labels)
        local_count = float(sum(COUNTS[rank]))
        dist.destroy_process_group()
        torch.manual_seed(0)
        local = criterion(class_logits, mask_logits, masks, labels)
        for name in ("loss_mask", "loss_dice"):
            torch.testing.assert_close(distributed[name], local[name] * local_count / 4.0)
        torch.testing.assert_close(distributed["loss_cross_entropy"], local["loss_cross_entropy"])
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_num_masks_is_averaged_over_processes():
    mp.spawn(_worker, args=(2, _free_port()), nprocs=2, join=True)
