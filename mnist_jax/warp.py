"""The compiled CPU kernel behind the augmentation's affine warp (optional).

``augment`` resamples rotation, shift and zoom with one bilinear warp. On
the CPU, XLA emits that warp's reads as scalar gathers, about 1 ns each;
the package's C++ kernel (``mnist_jax/native/warp.cc``, compiled when the
package is installed, where a C++ compiler is found) does the same
arithmetic with vector gathers of two neighbours at a time and shares the
images out over XLA's own intra-op thread pool. This module registers it
with XLA as an FFI target; ``augment`` calls it on the CPU when it is
there, and uses its pure-JAX sampler on GPUs and TPUs, for elastic
distortion, and wherever the kernel did not build.

Set ``MNIST_JAX_NATIVE=0`` before the first augmentation to use the pure-JAX
sampler on the CPU too.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
from types import ModuleType

import jax
import jaxlib.version
import numpy as np

from mnist_jax.errors import MnistJaxError

Array = jax.Array

log = logging.getLogger(__name__)

TARGET = "mnist_jax_affine_warp"

# The kernel's versions of its inner loop, by the number the call passes.
ISAS = {"best": 0, "plain": 1, "avx2": 2}


@functools.cache
def _kernel() -> ModuleType | None:
    if os.environ.get("MNIST_JAX_NATIVE", "1") == "0":
        return None
    try:
        import _mnist_jax_warp as kernel
    except ImportError:
        log.debug("no compiled warp kernel; augmenting with the JAX sampler")
        return None
    built, running = kernel.built_with_jaxlib, jaxlib.version.__version__
    if _release(running) < _release(built):
        # An older XLA may not offer the FFI calls the kernel was built for.
        log.warning(
            "the compiled warp kernel was built for jaxlib %s, not %s; "
            "augmenting with the JAX sampler (reinstall mnist-jax to rebuild)",
            built,
            running,
        )
        return None
    try:
        jax.ffi.register_ffi_target(TARGET, kernel.handler, platform="cpu")
    except Exception as error:  # a jaxlib whose FFI the kernel does not fit
        log.warning("the compiled warp kernel did not load (%s)", error)
        return None
    return kernel


def _release(version: str) -> tuple[int, ...]:
    """Returns ``"0.10.2"`` as ``(0, 10, 2)``; stops at the first non-number."""
    numbers = []
    for part in version.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def available() -> bool:
    """Returns whether the compiled kernel is installed and registered."""
    return _kernel() is not None


def preferred() -> bool:
    """Returns whether ``augment`` should warp with the kernel on the CPU.

    Only where its AVX2 loop runs: the plain C++ loop measured no faster
    than the JAX sampler (2.07 against 2.18 ms for 1,024 images).
    """
    return "avx2" in supported_isas()


def supported_isas() -> tuple[str, ...]:
    """Returns the inner loops this CPU can run (``"plain"`` always), if any."""
    kernel = _kernel()
    if kernel is None:
        return ()
    # kernel.supported[k - 1]: whether loop number k runs on this CPU.
    return tuple(name for name, k in ISAS.items() if k and kernel.supported[k - 1])


def affine_warp(images: Array, params: Array, isa: str = "best") -> Array:
    """Returns float32 ``images`` ``(..., h, w)`` resampled by ``params``.

    params: ``(..., 4)`` float32, ``(a, b, dy, dx)`` per image, where
    ``a = cos θ / s`` and ``b = sin θ / s``: output pixel ``(r, c)`` reads
    the input at ``y = cy + a v + b u``, ``x = cx - b v + a u``, with
    ``v = r - cy - dy`` and ``u = c - cx - dx``, bilinearly, 0 outside (the
    map in ``augment``'s docstring). Batch axes may be added by vmap.
    isa: ``"best"`` or one of ``supported_isas()``, to test each loop.
    A pixel whose source point is NaN is NaN. CPU only; not differentiable
    (``augment`` gives it the JAX sampler's derivatives).
    """
    if not available():
        raise MnistJaxError("the compiled warp kernel is not installed")
    if isa not in ISAS:
        raise MnistJaxError(f"isa must be one of {sorted(ISAS)}, got {isa!r}")
    if images.dtype != np.float32 or params.dtype != np.float32:
        raise MnistJaxError(
            "the warp kernel takes float32 images and params, got "
            f"{images.dtype} and {params.dtype}"
        )
    call = jax.ffi.ffi_call(
        TARGET,
        jax.ShapeDtypeStruct(images.shape, images.dtype),
        vmap_method="broadcast_all",
    )
    return call(images, params, isa=np.int32(ISAS[isa]))
