"""Seeded selection of examples: k-shot training sets, evaluation subsets and the multi-task stream.

Everything here is a pure function of its arguments (plain Python + ``torch.Generator``): the same seed gives
the same examples on every machine and every DDP rank. Seeds are derived from readable keys with SHA-256,
never from Python's randomised ``hash``.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from compt.errors import DataError
from compt.tasks import TaskSpec

GROUP_WINDOW_BATCHES = 50
"""Length grouping sorts windows of this many batches, so batches stay mixed across the epoch."""


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (e.g. ``("kshot", 42, "rte")``), identical on every machine."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def permutation(n: int, *parts: object) -> list[int]:
    """A permutation of ``range(n)`` seeded by ``stable_seed(*parts)``."""
    gen = torch.Generator().manual_seed(stable_seed(*parts))
    return torch.randperm(n, generator=gen).tolist()


# ---------------------------------------------------------------------------------------------- k-shot
def _too_few(task: TaskSpec, what: str, wanted: int, have: int) -> DataError:
    return DataError(
        f"task {task.name!r}: {what} asks for {wanted} rows but the train split has only {have}. Use a "
        "smaller k, k=-1 for the whole split, or kshot.allow_fewer=true "
        "to use every row there is."
    )


def select_train(
    task: TaskSpec,
    golds: Sequence[float],
    k: int,
    seed: int,
    *,
    balanced: bool = False,
    allow_fewer: bool = False,
    n_validation: int = 0,
) -> tuple[list[int], list[int]]:
    """Training and (optional) validation row indices of one task's train split.

    One permutation seeded by ``(seed, task.name)`` decides everything: the k-shot set is its first ``k`` rows
    (``balanced``: the first ``k`` of each label), the validation rows are the next ``n_validation`` rows not
    in the k-shot set, so turning validation on never changes the k-shot set. ``k=-1``: every row that is not
    a validation row. Tasks without fixed labels (regression, text answers, a list of choices) ignore ``balanced``
    (with a warning): labels are not classes.

    Args:
        golds: gold value per row (class id as float, or score), length n.
    Returns:
        (train indices, validation indices), each in permutation order.
    """
    n = len(golds)
    perm = permutation(n, "kshot", seed, task.name)
    if n_validation > n:
        raise _too_few(task, f"data.validation_from_train={n_validation}", n_validation, n)
    if k == -1:
        return perm[n_validation:], perm[:n_validation]
    if balanced and task.num_labels == 0:
        warnings.warn(
            f"kshot_balanced ignored for {task.kind} task {task.name!r} (no fixed labels): drawing k={k} rows",
            stacklevel=2,
        )
        balanced = False
    if balanced:
        by_label: dict[int, list[int]] = {c: [] for c in range(task.num_labels)}
        for i in perm:
            by_label[int(golds[i])].append(i)
        short = {c: len(rows) for c, rows in by_label.items() if len(rows) < k}
        if short and not allow_fewer:
            raise _too_few(
                task, f"k={k} per label (kshot_balanced) with label counts {short}", k, min(short.values())
            )
        chosen = {i for rows in by_label.values() for i in rows[:k]}
        train = [i for i in perm if i in chosen]
    else:
        if k > n - n_validation and not allow_fewer:
            raise _too_few(task, f"k={k}" + (f" + validation {n_validation}" if n_validation else ""), k, n)
        train = perm[: min(k, n - n_validation)]
    taken = set(train)
    validation = [i for i in perm if i not in taken][:n_validation]
    if len(validation) < n_validation:
        raise _too_few(
            task, f"validation_from_train={n_validation} after the k-shot set", n_validation, len(validation)
        )
    return train, validation


def eval_indices(
    task_name: str, n: int, max_samples: int, eval_seed: int, groups: Sequence[object] | None = None
) -> list[int]:
    """Evaluation rows: all ``n`` (max_samples=-1 or >= n), else a subset seeded by ``(eval_seed, task)`` only
    — never by the run seed — returned in the split's own order.

    ``groups`` (one key per row: multirc's question) keeps questions whole: whole groups are drawn in a seeded
    order until ``max_samples`` rows are reached (the last group may pass it), so a question-level metric sees
    every answer of each question it scores."""
    if max_samples == -1 or max_samples >= n:
        return list(range(n))
    if groups is None:
        return sorted(permutation(n, "eval", eval_seed, task_name)[:max_samples])
    members: dict[object, list[int]] = {}
    for row, key in enumerate(groups):
        members.setdefault(key, []).append(row)
    keys = list(members)
    chosen: list[int] = []
    for g in permutation(len(keys), "eval", eval_seed, task_name):
        if len(chosen) >= max_samples:
            break
        chosen += members[keys[g]]
    return sorted(chosen)


# ---------------------------------------------------------------------------------------------- mixing
def mixing_probabilities(sizes: Sequence[int], temperature: float) -> list[float]:
    """Share of each task in the stream: p_i ∝ n_i^(1/T) (T=1 proportional to size, T→∞ uniform)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"every task needs at least one training example, got sizes {list(sizes)}")
    weights = [n ** (1.0 / temperature) for n in sizes]
    total = sum(weights)
    return [w / total for w in weights]


def epoch_quotas(sizes: Sequence[int], temperature: float, epoch_size: int) -> list[int]:
    """Examples of each task in one epoch: ``epoch_size · p_i`` rounded by the largest-remainder method, so the
    quotas sum to ``epoch_size`` (ties go to the earlier task). Equal sizes and ``epoch_size = Σ n_i`` give
    every task exactly its size."""
    exact = [epoch_size * p for p in mixing_probabilities(sizes, temperature)]
    quotas = [math.floor(x + 1e-9) for x in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (quotas[i] - exact[i], i))
    for i in by_remainder[: epoch_size - sum(quotas)]:
        quotas[i] += 1
    return quotas


def task_cycle(name: str, size: int, seed: int, start: int, count: int) -> list[int]:
    """Positions ``start .. start + count - 1`` of one task's endless row cycle: seeded permutations of its
    ``size`` rows one after another, so every row is used once before any is used twice."""
    rows: list[int] = []
    for lap in range(start // size, (start + count - 1) // size + 1 if count else 0):
        perm = permutation(size, "cycle", seed, name, lap)
        rows += perm[max(start - lap * size, 0) : start + count - lap * size]
    return rows


def mixed_stream(
    names: Sequence[str], sizes: Sequence[int], temperature: float, seed: int, epoch: int, length: int
) -> list[tuple[int, int]]:
    """One epoch of the multi-task training stream: ``length`` pairs (task id, row index in that task).

    Task i contributes its quota ``q_i`` (:func:`epoch_quotas`, ∝ n_i^(1/T)): the next ``q_i`` rows of its cycle
    (epoch e takes cycle positions ``e·q_i .. (e+1)·q_i - 1``), and the pairs of all tasks are shuffled together
    by a permutation seeded by ``(seed, epoch)`` — sampling without replacement, as the authors' concatenated
    and shuffled datasets. With equal task sizes (every k-shot run) and ``length = Σ n_i`` each example appears
    exactly once per epoch. A pure function of its inputs.
    """
    quotas = epoch_quotas(sizes, temperature, length)
    pairs = [
        (t, row)
        for t, quota in enumerate(quotas)
        for row in task_cycle(names[t], sizes[t], seed, epoch * quota, quota)
    ]
    return [pairs[i] for i in permutation(len(pairs), "stream", seed, epoch)]


# ---------------------------------------------------------------------------------------------- samplers
def dist_rank_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world size): explicit values win, else ``torch.distributed`` when initialised, else (0, 1)."""
    if rank is None or world_size is None:
        initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank = rank if rank is not None else (torch.distributed.get_rank() if initialised else 0)
        world_size = (
            world_size
            if world_size is not None
            else (torch.distributed.get_world_size() if initialised else 1)
        )
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    return rank, world_size


class MixedTaskSampler(Sampler[int]):
    """The whole (unsharded) training stream of an epoch as global example indices.

    Global index of row r of task t = ``offsets[t] + r`` (the order of a concatenation of the task datasets).
    ``set_epoch`` changes the stream (Lightning calls it through ``batch_sampler.sampler``).
    """

    def __init__(
        self, names: Sequence[str], sizes: Sequence[int], temperature: float, seed: int, length: int
    ):
        self.names, self.sizes = list(names), list(sizes)
        self.temperature, self.seed, self.length, self.epoch = temperature, seed, length, 0
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]

    def set_epoch(self, epoch: int) -> None:
        """Select the stream of ``epoch``."""
        self.epoch = epoch

    def stream(self) -> list[tuple[int, int]]:
        """(task id, row) pairs of the current epoch."""
        return mixed_stream(self.names, self.sizes, self.temperature, self.seed, self.epoch, self.length)

    def __iter__(self) -> Iterator[int]:
        return iter([self.offsets[t] + r for t, r in self.stream()])

    def __len__(self) -> int:
        return self.length


class ShardedBatchSampler(Sampler[list[int]]):
    """This rank's batches of the sampler's stream.

    The stream is padded to a multiple of ``world_size`` by repeating its first ``(-len) mod W`` examples (fewer
    than W per epoch; none on one device) and rank r takes examples ``r, r + W, r + 2W, ...``: every rank
    computes the same stream, so the shares are disjoint and together cover it, and all ranks get the same
    number of batches (the last one may be partial). ``group_by_length`` sorts windows of
    ``GROUP_WINDOW_BATCHES`` batches by length and shuffles the batch order (seeded by seed and epoch).
    """

    def __init__(
        self,
        sampler: MixedTaskSampler,
        batch_size: int,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        lengths: Sequence[int] | None = None,
        group_by_length: bool = False,
    ):
        self.sampler, self.batch_size = sampler, batch_size
        self.rank, self.world_size = dist_rank_world(rank, world_size)
        if group_by_length and lengths is None:
            raise ValueError("group_by_length needs the example lengths")
        self.lengths, self.group_by_length = lengths, group_by_length
        self._start = 0

    def set_epoch(self, epoch: int) -> None:
        """Forward to the stream sampler."""
        self.sampler.set_epoch(epoch)

    def resume_at(self, batch: int) -> None:
        """Start the next iteration at batch ``batch`` of the epoch (a run resumed from a checkpoint written
        mid-epoch); later iterations start at 0. ``len`` stays the epoch's number of batches."""
        self._start = batch

    def share(self) -> list[int]:
        """This rank's examples of the epoch, in stream order."""
        stream = list(self.sampler)
        stream += stream[: (-len(stream)) % self.world_size]
        return stream[self.rank :: self.world_size]

    def batches(self) -> list[list[int]]:
        """This rank's batches of the epoch."""
        share, size = self.share(), self.batch_size
        if not self.group_by_length:
            return [share[i : i + size] for i in range(0, len(share), size)]
        window = size * GROUP_WINDOW_BATCHES
        batches = []
        for start in range(0, len(share), window):
            chunk = sorted(share[start : start + window], key=lambda i: self.lengths[i])  # type: ignore[index]
            batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
        order = permutation(len(batches), "group", self.sampler.seed, self.sampler.epoch)
        return [batches[i] for i in order]

    def __iter__(self) -> Iterator[list[int]]:
        start, self._start = self._start, 0
        return iter(self.batches()[start:])

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.sampler) / self.world_size) / self.batch_size)


class EvalShardSampler(Sampler[int]):
    """Examples ``rank, rank + W, ...`` of an evaluation set: no padding, no duplicates, so the ranks
    together evaluate each example exactly once (gather by ``example_ids``)."""

    def __init__(self, n: int, *, rank: int | None = None, world_size: int | None = None):
        self.n = n
        self.rank, self.world_size = dist_rank_world(rank, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))
