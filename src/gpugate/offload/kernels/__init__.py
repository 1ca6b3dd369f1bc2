"""Compute kernels of the offload runtime, each in three implementations with one meaning.

Every kernel comes as ``*_numpy`` (vectorized NumPy, the baseline), ``*_numba`` (parallel
loops on the CPU's cores) and ``*_cupy`` (CUDA through CuPy, which is imported only when a
``*_cupy`` function runs). A ``*_work`` function gives the size of one call in the unit the
runtime compares speeds in, and ``*_inputs`` functions make seeded inputs for tests and
benchmarks.
"""
