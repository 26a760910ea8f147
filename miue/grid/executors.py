"""Where jobs run: the clusters, submitit's local and Slurm executors, and the GPUs each job asks for and sees."""

from __future__ import annotations

from pathlib import Path

CLUSTERS = ("inline", "local", "slurm")  # where jobs run: this process, local subprocesses, Slurm job arrays


def job_gpus(cluster: str, device: str, requested: int | None = None, cuda_here: bool | None = None) -> int:
    """GPUs each job asks for: ``requested`` when given, else 1 where the profile's runs go to a GPU (device
    ``cuda…``, or ``auto`` on a local machine that has one), else 0.

    It matters: submitit's local executor sets ``CUDA_VISIBLE_DEVICES`` to the GPUs a job asks for, so a job
    that asks for none trains on the CPU, and a Slurm job that asks for none gets none allocated. On Slurm,
    ``auto`` cannot know the nodes: pass ``--gpus 1`` there."""
    if requested is not None:
        if requested < 0:
            raise ValueError(f"--gpus must be 0 or more, got {requested}")
        return requested
    if cluster == "inline":
        return 0  # the grid's own process: every GPU it sees stays visible
    if str(device).startswith("cuda"):
        return 1
    if device == "auto" and cluster == "local":
        if cuda_here is None:
            import torch
            cuda_here = torch.cuda.is_available()
        return 1 if cuda_here else 0
    return 0


def _executor(cluster: str, folder: Path, threads: int, jobs: int, timeout_min: int, partition: str | None,
              mem_gb: float | None, gpus: int = 0):
    import submitit
    if cluster == "local":
        ex_ = submitit.LocalExecutor(folder=str(folder))
        ex_.update_parameters(timeout_min=timeout_min, gpus_per_node=gpus)
        return ex_
    ex_ = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    params = {"timeout_min": timeout_min, "cpus_per_task": threads, "slurm_array_parallelism": jobs,
              "name": "miue-grid"}
    if gpus:
        params["gpus_per_node"] = gpus
    if partition:
        params["slurm_partition"] = partition
    if mem_gb:
        params["mem_gb"] = mem_gb
    ex_.update_parameters(**params)
    return ex_


def _gpu_turn(k: int, gpus: int, count: int | None = None) -> tuple:
    """The GPUs the ``k``-th local job sees: ``gpus`` of the machine's ``count``, in turn."""
    if count is None:
        import torch
        count = torch.cuda.device_count()
    count = max(count, gpus)
    return tuple((k * gpus + i) % count for i in range(gpus))
