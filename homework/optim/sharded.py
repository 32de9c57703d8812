"""
Data-parallel full fine-tuning of float32 BigNet with the optimizer state sharded across the
processes: ZeRO stage 1, on PyTorch's own engine.

    python -m homework.optim.sharded --processes 2 --steps 5 --batch-size 64 --lr 1e-3
    torchrun --nproc-per-node 2 -m homework.optim.sharded --steps 5 --batch-size 64 --lr 1e-3

The first form starts the processes itself; under torchrun, torchrun starts them and decides how
many. Either way it prints, per process, the AdamW state it holds (measured with the allocator, and
what it should be), the same for a single process training alone, and how far the sharded run's
trained weights are from that single process's.

In plain data parallelism every process holds the whole model, its gradients and its optimizer
state, and all of them make the same update. AdamW's state is two float32 moments per parameter,
twice the model: 144 MB of BigNet's training memory, repeated in every process. ZeRO (Zero
Redundancy Optimizer) stage 1 removes that repetition: each process keeps the state of, and
updates, only its share of the parameters, then sends its updated share to the others. The
parameters themselves stay whole in every process, because every process needs all of them for its
forward and backward passes; the state is needed only to update, which one owner can do for all.
With N processes each holds 1/N of the state, and the training is unchanged: the same update is
computed once instead of N times.

Each process takes a contiguous slice of the global batch and its mean loss; gradients averaged
over the processes (DistributedDataParallel) are then the gradient of the mean loss over the whole
batch, so the run matches one process training on all of it, up to float rounding.

The task is `homework.data.noise_classification`, `homework.fit`'s: `batch_size` samples of random noise through a frozen random head,
the same batch every step. MB means 2**20 bytes.
"""

import os
import socket
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

from .. import bignet
from ..data import noise_classification
from ..memory import MB, AllocationTrace
from .functional import adam_state_bytes

# torch.optim.AdamW counts its steps in a float32 scalar tensor per parameter, besides the two moments.
STEP_COUNTER_BYTES = 4


@dataclass
class TrainingRun:
    """One run's figures, one entry per process, and the weights it trained."""

    measured_state_bytes: list[int]  # what each process's first optimizer step left allocated
    theoretical_state_bytes: list[int]  # AdamW's state for the parameters each process updates
    state_dict: dict[str, torch.Tensor]


def adamw_state_bytes(parameters) -> int:
    """What torch.optim.AdamW keeps for these parameters: Adam's moments, and a step counter each."""
    return sum(adam_state_bytes(p) + STEP_COUNTER_BYTES for p in parameters)


def train_sharded(processes: int = 2, steps: int = 5, batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> TrainingRun:
    """Start `processes` processes that train BigNet together with ZeRO stage 1: every rank's figures, rank 0's weights."""
    check_divisible(batch_size, processes)
    port = _free_port()
    with tempfile.TemporaryDirectory() as folder:
        # Spawned processes return nothing: rank 0 leaves the run in a file.
        result_path = Path(folder) / "run.pt"
        mp.spawn(_spawned_process, args=(processes, port, steps, batch_size, lr, seed, result_path), nprocs=processes)
        return TrainingRun(**torch.load(result_path, weights_only=True))


def train_single_process(steps: int = 5, batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> TrainingRun:
    """The reference: plain AdamW in this process, on the whole global batch."""
    model = bignet.load()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    measured = _train(model, optimizer, *noise_classification(batch_size, seed), steps)
    return TrainingRun([measured], [adamw_state_bytes(model.parameters())], model.state_dict())


def max_abs_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest elementwise difference between two state dicts with the same keys and shapes."""
    return max((a[name] - b[name]).abs().max().item() for name in a)


def check_divisible(batch_size: int, processes: int) -> None:
    """Every process must take an equal slice, or averaging their gradients would weight samples unequally."""
    if batch_size % processes:
        raise ValueError(f"--batch-size must be divisible by the number of processes, {processes}, not {batch_size}")


def _spawned_process(rank: int, world_size: int, port: int, steps: int, batch_size: int, lr: float, seed: int, result_path: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        result = _train_this_rank(steps, batch_size, lr, seed)
    finally:
        dist.destroy_process_group()
    if rank == 0:
        torch.save(vars(result), result_path)


def _train_this_rank(steps: int, batch_size: int, lr: float, seed: int) -> TrainingRun:
    """This process's part of the sharded run, in an initialized process group; every rank gets all ranks' figures."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)  # one core per process: more threads would only fight over the cores
    net = bignet.load()  # the same weights in every process: the checkpoint's
    model = DistributedDataParallel(net)  # averages the gradients over the processes in backward
    optimizer = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.AdamW, lr=lr)
    x, labels, head = noise_classification(batch_size, seed)
    local = slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)
    measured = _train(model, optimizer, x[local], labels[local], head, steps)
    # `optim` is the AdamW that ZeRO runs on this rank's share of the parameters.
    theoretical = adamw_state_bytes(p for group in optimizer.optim.param_groups for p in group["params"])
    figures = [None] * world_size
    dist.all_gather_object(figures, (measured, theoretical))
    measured_per_rank, theoretical_per_rank = map(list, zip(*figures))
    return TrainingRun(measured_per_rank, theoretical_per_rank, net.state_dict())


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x, labels, head, steps: int) -> int:
    """Full-batch steps on (x, labels); returns the bytes the first optimizer step left allocated."""
    first_step = AllocationTrace()
    for step in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(head(model(x)), labels).backward()
        # AdamW creates its state on the first step, so what that step leaves allocated is the state.
        with first_step if step == 0 else nullcontext():
            optimizer.step()
    return first_step.net


def _free_port() -> int:
    # Port 0 asks the system for a free one; it stays free for the moment until rank 0 binds it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _report(sharded: TrainingRun, single: TrainingRun) -> None:
    for rank, (measured, theoretical) in enumerate(zip(sharded.measured_state_bytes, sharded.theoretical_state_bytes)):
        print(f"rank {rank}: optimizer state {measured / MB:.2f} MB measured, {theoretical / MB:.2f} MB theoretical")
    print(
        f"single process: optimizer state {single.measured_state_bytes[0] / MB:.2f} MB measured, {single.theoretical_state_bytes[0] / MB:.2f} MB theoretical"
    )
    print(f"max abs weight difference, sharded vs single process: {max_abs_difference(sharded.state_dict, single.state_dict):.3g}")


def main(processes: int | None = None, steps: int = 5, batch_size: int = 64, lr: float = 1e-3, seed: int = 0):
    """
    Train BigNet with ZeRO stage 1, then alone in this process, and compare the optimizer state and the weights.
    --processes: how many processes to start (default 2); under torchrun, torchrun's --nproc-per-node
    decides, and --processes, if given, must agree. --seed: the noise data set's.
    """
    from ..cli import UsageError, check_float, check_int  # here, not above: the optimizer library needs no command line

    steps, batch_size, lr, seed = (
        check_int("steps", steps, minimum=1),
        check_int("batch_size", batch_size, minimum=1),
        check_float("lr", lr, above=0),
        check_int("seed", seed, minimum=0),
    )
    started_by_torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    world_size = int(os.environ["WORLD_SIZE"]) if started_by_torchrun else 2
    processes = world_size if processes is None else check_int("processes", processes, minimum=1)
    if started_by_torchrun and processes != world_size:
        raise UsageError(
            f"--processes is {processes}, but torchrun started {world_size}: give torchrun --nproc-per-node {processes} instead"
        )
    try:
        check_divisible(batch_size, processes)
    except ValueError as e:
        raise UsageError(str(e)) from None

    if not started_by_torchrun:
        sharded = train_sharded(processes, steps, batch_size, lr, seed)
    else:
        dist.init_process_group("gloo")  # torchrun's environment says where and who
        try:
            sharded = _train_this_rank(steps, batch_size, lr, seed)
        finally:
            dist.destroy_process_group()
        if int(os.environ["RANK"]) != 0:
            return  # rank 0 reports for every rank
    _report(sharded, train_single_process(steps, batch_size, lr, seed))


if __name__ == "__main__":
    from ..cli import run

    run(main)
