"""Builds mnist-jax's optional CPU warp kernel; the rest is in pyproject.toml.

The kernel is an XLA FFI handler, so it compiles against the FFI headers
that jaxlib ships. It is optional: where it does not build (no C++
compiler, no jaxlib wheel for the platform) the package installs without
it and augments with the pure-JAX sampler instead.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup


def ffi_include() -> str | None:
    """Returns jaxlib's folder of XLA FFI headers, or None without jaxlib."""
    try:
        import jaxlib
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(jaxlib.__file__), "include")
    return path if os.path.isdir(os.path.join(path, "xla", "ffi")) else None


def ext_modules() -> list[Extension]:
    include = ffi_include()
    if include is None:
        return []
    warp = Extension(
        "_mnist_jax_warp",
        sources=["mnist_jax/native/warp.cc"],
        include_dirs=[include],
        language="c++",
        extra_compile_args=["-std=c++17", "-O2", "-fvisibility=hidden"],
        py_limited_api=True,
        optional=True,
    )
    return [warp]


setup(ext_modules=ext_modules())
