"""Builds mnist-jax's optional CPU warp kernel; the rest is in pyproject.toml.

The kernel is an XLA FFI handler, so it compiles against the FFI headers
that jaxlib ships. It is optional: where it does not build (no C++
compiler, no jaxlib wheel for the platform) the package installs without
it and augments with the pure-JAX sampler instead.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup


def ffi_headers() -> tuple[str, str] | None:
    """Returns (jaxlib's folder of XLA FFI headers, jaxlib's version), or None."""
    try:
        import jaxlib
        import jaxlib.version
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(jaxlib.__file__), "include")
    if not os.path.isdir(os.path.join(path, "xla", "ffi")):
        return None
    return path, jaxlib.version.__version__


def ext_modules() -> list[Extension]:
    headers = ffi_headers()
    if headers is None:
        return []
    include, version = headers
    warp = Extension(
        "_mnist_jax_warp",
        sources=["mnist_jax/native/warp.cc"],
        include_dirs=[include],
        # The runtime refuses the kernel under an older jaxlib (mnist_jax.warp).
        define_macros=[("MNIST_JAX_BUILT_WITH_JAXLIB", f'"{version}"')],
        language="c++",
        extra_compile_args=["-std=c++17", "-O2", "-fvisibility=hidden"],
        py_limited_api=True,
        optional=True,
    )
    return [warp]


setup(ext_modules=ext_modules())
