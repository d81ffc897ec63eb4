"""Plain-numpy reference twins of the numba kernels (like :mod:`xarray.testing`): slow, obvious, for tests."""
