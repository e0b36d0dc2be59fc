"""DistributedDataParallel: a small decoder of torch_tconv layers trained by
2 processes (gloo, CPU), each on half of the batch, ends with the weights and
gradients of single-process training on the whole batch."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import torch_tconv

WORLD = 2
STEPS = 3


def decoder():
    torch.manual_seed(0)
    return nn.Sequential(
        torch_tconv.ConvTranspose2d(6, 4, 4, stride=2, padding=1),
        nn.Tanh(),
        torch_tconv.ConvTranspose2d(4, 4, 3, stride=2, padding="same", groups=2),
        nn.Tanh(),
        torch_tconv.ConvTranspose2d(4, 1, 3, padding=1),
    ).double()


def batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 6, 3, 3, generator=g, dtype=torch.float64),
             torch.randn(4, 1, 12, 12, generator=g, dtype=torch.float64)) for _ in range(STEPS)]


def train(model, data, rank=0, world=1):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in data:
        share = x.shape[0] // world
        part = slice(rank * share, (rank + 1) * share)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x[part]), y[part])
        loss.backward()
        optimizer.step()
    return model


def worker(rank, port, out_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    model = nn.parallel.DistributedDataParallel(decoder())
    train(model, batches(), rank, WORLD)
    if rank == 0:
        torch.save({name: (p.detach().clone(), p.grad.detach().clone())
                    for name, p in model.module.named_parameters()}, out_path)
    dist.barrier()
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_ddp_matches_single_process_training(tmp_path):
    out_path = str(tmp_path / "ddp.pt")
    mp.spawn(worker, args=(free_port(), out_path), nprocs=WORLD, join=True)
    distributed = torch.load(out_path)
    single = train(decoder(), batches())
    for name, p in single.named_parameters():
        weight, grad = distributed[name]
        # DDP averages the halves' gradients: the full batch's mean loss.
        torch.testing.assert_close(weight, p.detach(), rtol=1e-10, atol=1e-12, msg=name)
        torch.testing.assert_close(grad, p.grad, rtol=1e-10, atol=1e-12, msg=name)
