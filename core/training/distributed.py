"""Data parallelism over `paddle.distributed` (launched with `python -m paddle.distributed.launch`):
every rank computes the same batch plan and trains on its slice of each global batch; gradients
are averaged over the ranks before each optimizer step, so the run equals one process with the
whole global batch."""

from __future__ import annotations


class Distributed:
    """Rank, world size and gradient averaging; a single process is world 1."""

    def __init__(self):
        import paddle.distributed as dist

        self.world = dist.get_world_size()
        self.rank = dist.get_rank() if self.world > 1 else 0
        if self.world > 1:
            dist.init_parallel_env()
        self.dist = dist

    def average_gradients(self, parameters) -> None:
        if self.world == 1:
            return
        import paddle

        with paddle.no_grad():  # in-place updates of the gradients themselves
            for param in parameters:
                grad = param.grad
                if grad is not None:
                    self.dist.all_reduce(grad)
                    grad.scale_(1.0 / self.world)

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        import paddle

        tensor = paddle.to_tensor([value], dtype="float64")
        self.dist.all_reduce(tensor)
        return float(tensor.numpy()[0]) / self.world
