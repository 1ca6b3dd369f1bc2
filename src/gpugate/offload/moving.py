"""Moving a call's arrays to the device that runs it, and its result back home; every
move timed, so that the transfer models learn what the links really cost."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from gpugate.offload.devices import Device
from gpugate.offload.policy import memory_of
from gpugate.offload.task import holds_arrays


class Move(NamedTuple):
    device: Device  # the GPU whose link was used
    direction: str  # "h2d" or "d2h"
    nbytes: int
    seconds: float


class Mover:
    def __init__(self, cpu: Device, gpus: Sequence[Device]) -> None:
        self.cpu = cpu
        self.gpus = tuple(gpus)
        self._by_name: Mapping[str, Device] = {g.name: g for g in gpus}

    def where(self, value: Any) -> Device | None:
        """The device whose memory holds ``value``: a GPU that claims it (its arrays may
        look like host arrays, as a simulated GPU's do), else the host for any array."""
        if not hasattr(value, "nbytes"):
            return None
        for gpu in self.gpus:
            if gpu.holds(value):
                return gpu
        return self.cpu if self.cpu.holds(value) else None

    def bring(self, value: Any, device: Device, moves: list[Move]) -> Any:
        """``value`` in ``device``'s memory, if it is an array living elsewhere (or a
        list or tuple of them)."""
        if holds_arrays(value):
            return rebuilt(value, [self.bring(v, device, moves) for v in value])
        here = self.where(value)
        if here is None or here is device:
            return value
        if here.is_gpu:
            value = timed_move(here, "d2h", value, moves)
        if device.is_gpu:
            value = timed_move(device, "h2d", value, moves)
        return value

    def send_home(self, result: Any, device: Device, home: str, moves: list[Move]) -> Any:
        """The result where the call's inputs lived (``home``): NumPy in, NumPy out."""
        if home == memory_of(device):
            return result
        if isinstance(result, list | tuple):
            return rebuilt(result, [self.send_home(r, device, home, moves) for r in result])
        if device.is_gpu and device.holds(result):
            result = timed_move(device, "d2h", result, moves)
        target = self._by_name.get(home)
        if target is not None and self.where(result) is self.cpu:
            result = timed_move(target, "h2d", result, moves)
        return result


def rebuilt(sequence: list[Any] | tuple[Any, ...], items: list[Any]) -> Any:
    """``sequence``'s type holding ``items`` (a NamedTuple is rebuilt by its fields)."""
    make = getattr(sequence, "_make", None)
    return make(items) if make is not None else type(sequence)(items)


def timed_move(device: Device, direction: str, value: Any, moves: list[Move]) -> Any:
    start = time.perf_counter()
    moved = device.to_device(value) if direction == "h2d" else device.to_host(value)
    device.synchronize()
    moves.append(Move(device, direction, int(value.nbytes), time.perf_counter() - start))
    return moved
