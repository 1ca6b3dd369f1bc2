"""``@offload.task``: one computation, several implementations, chosen per call.

    @offload.task(kind="matmul", work=lambda a, b: 2 * a.shape[0] * a.shape[1] * b.shape[1])
    def matmul(a, b):                 # the CPU implementation (variant "cpu")
        return a @ b

    @matmul.cpu("numba")             # another CPU implementation (variant "cpu:numba")
    def _(a, b): ...

    @matmul.gpu                      # the GPU implementation (variant "gpu"): it gets and
    def _(a, b): ...                 # returns arrays in GPU memory; moving them is ours

A GPU variant receives its array arguments in device memory and returns device arrays;
the runtime moves them (and times the moves). A result goes back to where the call's
inputs lived: NumPy in, NumPy out; CuPy in, CuPy out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, overload

if TYPE_CHECKING:
    from gpugate.offload.devices import Device
    from gpugate.offload.explain import Explanation

Impl = Callable[..., Any]
HOST = "host"  # where NumPy arrays live, in CallFeatures.resident and home


@dataclass(frozen=True, slots=True)
class Variant:
    """One implementation: ``name`` is ``cpu``, ``cpu:<label>``, ``gpu`` or ``gpu:<label>``."""

    name: str
    on_gpu: bool
    func: Impl


class CallFeatures(NamedTuple):
    """What the chooser knows about one call, before it runs.

    ``work`` is in the task's own units (flops for a matmul, pixels times taps for a
    filter); ``resident`` maps a device name (``host``, ``cuda:0``) to the input bytes
    that already live there; ``home`` is where the result goes back to. (A NamedTuple:
    made on every call, and cheaper than a dataclass.)
    """

    kind: str
    work: float
    dtype: str
    in_bytes: int
    out_bytes: int
    device_mem_bytes: int
    resident: Mapping[str, int]
    home: str


class OffloadTask:
    """A task with its variants; calling it runs it where the runtime chooses."""

    def __init__(
        self,
        func: Impl,
        *,
        kind: str,
        work: Callable[..., float] | None,
        out_bytes: Callable[..., int] | None,
        device_mem_bytes: Callable[..., int] | None,
        variant: str,
    ) -> None:
        functools.update_wrapper(self, func)
        self.kind = kind
        self.work_of = work
        self.out_bytes_of = out_bytes
        self.device_mem_of = device_mem_bytes
        self.variants: list[Variant] = []
        self._add(Variant(variant, False, func))

    def _add(self, variant: Variant) -> None:
        if any(v.name == variant.name for v in self.variants):
            raise ValueError(f"task {self.kind!r} already has a variant {variant.name!r}")
        self.variants.append(variant)

    def cpu(self, label: str) -> Callable[[Impl], Impl]:
        """Decorator: another CPU implementation, variant ``cpu:<label>``."""

        def register(func: Impl) -> Impl:
            self._add(Variant(f"cpu:{label}", False, func))
            return func

        return register

    @overload
    def gpu(self, func: Impl) -> Impl: ...
    @overload
    def gpu(self, func: str) -> Callable[[Impl], Impl]: ...

    def gpu(self, func: Impl | str) -> Impl | Callable[[Impl], Impl]:
        """Decorator, bare (variant ``gpu``) or with a label (``@task.gpu("raw")``:
        variant ``gpu:raw``): a GPU implementation."""
        if isinstance(func, str):
            label = func

            def register(f: Impl) -> Impl:
                self._add(Variant(f"gpu:{label}", True, f))
                return f

            return register
        self._add(Variant("gpu", True, func))
        return func

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.variants)
        raise KeyError(f"task {self.kind!r} has no variant {name!r} (it has {known})")

    # ---------------------------------------------------------------------- calling
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from gpugate.offload.default import default_runtime

        return default_runtime().run(self, args, kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue the call on the device expected to finish it first; a Future of its result."""
        from gpugate.offload.default import default_runtime

        return default_runtime().submit(self, args, kwargs)

    def explain(self, *args: Any, **kwargs: Any) -> Explanation:
        from gpugate.offload.default import default_runtime

        return default_runtime().explain(self, args, kwargs)

    def __repr__(self) -> str:
        names = ", ".join(v.name for v in self.variants)
        return f"<offload task {self.kind!r}: {names}>"

    # --------------------------------------------------------------------- features
    def describe(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], gpus: Sequence[Device]
    ) -> CallFeatures:
        """The call's features (see ``CallFeatures``). Cheap: a few attribute reads."""
        arrays = _arrays_in(args)
        if kwargs:
            arrays += _arrays_in(kwargs.values())
        resident: dict[str, int] = {}
        if gpus:
            for a in arrays:
                where = _where(a, gpus)
                resident[where] = resident.get(where, 0) + int(a.nbytes)
        elif arrays:  # no GPU: everything is on the host (the common case, made cheap)
            resident[HOST] = sum(int(a.nbytes) for a in arrays)
        in_bytes = sum(resident.values())
        out = (
            self.out_bytes_of(*args, **kwargs)
            if self.out_bytes_of
            else max((int(a.nbytes) for a in arrays), default=0)
        )
        work = self.work_of(*args, **kwargs) if self.work_of else _default_work(arrays, args)
        dev_mem = (
            self.device_mem_of(*args, **kwargs) if self.device_mem_of else 2 * (in_bytes + out)
        )
        return CallFeatures(
            kind=self.kind,
            work=float(work),
            dtype=_dtype_name(arrays[0]) if arrays else "none",
            in_bytes=in_bytes,
            out_bytes=int(out),
            device_mem_bytes=int(dev_mem),
            resident=resident,
            home=max(resident, key=resident.__getitem__) if resident else HOST,
        )


def _arrays_in(values: Iterable[Any]) -> list[Any]:
    """The arrays among ``values``, and in the lists and tuples of arrays among them
    (``stack([a, b, c])``): what is moved to the device that runs the call."""
    arrays = []
    for value in values:
        if hasattr(value, "nbytes"):
            arrays.append(value)
        elif holds_arrays(value):
            arrays += [a for a in value if hasattr(a, "nbytes")]
    return arrays


def holds_arrays(value: Any) -> bool:
    """A list or tuple of arrays, told by its first item: a long list of numbers is
    not walked on every call."""
    return isinstance(value, list | tuple) and len(value) > 0 and hasattr(value[0], "nbytes")


_DTYPE_NAMES: dict[Any, str] = {}


def _dtype_name(array: Any) -> str:
    """``str(array.dtype)``, memoized: NumPy's costs microseconds, a decision's budget."""
    dtype = getattr(array, "dtype", None)
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype) if dtype is not None else "none"
    return name


def _where(array: Any, gpus: Sequence[Device]) -> str:
    for gpu in gpus:
        if gpu.holds(array):
            return gpu.name
    return HOST


def _default_work(arrays: Sequence[Any], args: Sequence[Any]) -> float:
    """Elements of all array arguments; else the first integer argument; else 1."""
    if arrays:
        return float(sum(int(getattr(a, "size", 1)) for a in arrays))
    ints = [a for a in args if isinstance(a, int) and not isinstance(a, bool)]
    return float(ints[0]) if ints else 1.0


@overload
def task(
    func: Impl,
    *,
    kind: str | None = None,
    work: Callable[..., float] | None = None,
    out_bytes: Callable[..., int] | None = None,
    device_mem_bytes: Callable[..., int] | None = None,
    variant: str = "cpu",
) -> OffloadTask: ...
@overload
def task(
    func: None = None,
    *,
    kind: str | None = None,
    work: Callable[..., float] | None = None,
    out_bytes: Callable[..., int] | None = None,
    device_mem_bytes: Callable[..., int] | None = None,
    variant: str = "cpu",
) -> Callable[[Impl], OffloadTask]: ...


def task(
    func: Impl | None = None,
    *,
    kind: str | None = None,
    work: Callable[..., float] | None = None,
    out_bytes: Callable[..., int] | None = None,
    device_mem_bytes: Callable[..., int] | None = None,
    variant: str = "cpu",
) -> OffloadTask | Callable[[Impl], OffloadTask]:
    """Declare a task from its CPU implementation (see the module docstring).

    ``kind`` names what is learned (default: the function's name); ``work(*args)`` is
    its size in any unit that time grows with (default: elements of the array
    arguments); ``out_bytes(*args)`` the result's size (default: the largest input);
    ``device_mem_bytes(*args)`` what a GPU run needs in device memory (default: twice
    inputs plus result), which must be free for the GPU to be chosen.
    """

    def make(f: Impl) -> OffloadTask:
        return OffloadTask(
            f,
            kind=kind or f.__name__,
            work=work,
            out_bytes=out_bytes,
            device_mem_bytes=device_mem_bytes,
            variant=variant,
        )

    return make(func) if func is not None else make
