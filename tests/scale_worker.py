"""Data-parallel training in a fresh process, for tests/test_scale.py.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 \\
        python tests/scale_worker.py OUT_DIR

JAX fixes its device count when it starts, so a test that wants four CPU
devices runs this script in a subprocess. It trains ``blobs(200)`` with the
test config on every device and writes ``OUT_DIR/state.npz`` (the leaves
of params and opt_state) and ``OUT_DIR/facts.json`` (device count, step,
losses, what the compiled program does, the error for a batch that does
not split).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_train import blobs  # noqa: E402

from mnist_jax import parallel, train  # noqa: E402
from mnist_jax.errors import MnistJaxError  # noqa: E402

# Dropout and augmentation on: their random bits must not depend on sharding.
CONFIG = dict(
    sizes=(784, 16, 10), batch_size=32, chunk_steps=4, lr=3e-3, augment=train.AUGMENT
)
EPOCHS = 4


def compiled_facts(config: train.TrainConfig, n_train: int) -> dict:
    """Returns what the compiled chunk does: all-reduce, rows per device."""
    mesh = parallel.data_mesh()
    chunk = parallel.make_sharded_chunk(
        config, train.make_optimizer(config, n_train), n_train, mesh
    )
    state = parallel.replicate(train.init_state(config, n_train), mesh)
    split = NamedSharding(mesh, P(None, "data"))
    shape = (config.chunk_steps, config.batch_size)
    batches = [
        jax.device_put(np.zeros(shape + (784,), np.uint8), split),
        jax.device_put(np.zeros(shape, np.int32), split),
        jax.device_put(np.zeros(shape, np.float32), split),
    ]
    text = chunk.lower(state, *batches).compile().as_text()
    rows = sorted({int(n) for n in re.findall(r"u8\[(\d+),784\]", text)})
    return {"all_reduce": "all-reduce" in text, "image_rows": rows}


def main(out_dir: str) -> None:
    out = Path(out_dir)
    images, labels = blobs(200)
    config = train.TrainConfig(**CONFIG, epochs=EPOCHS)
    state, history = train.fit(images, labels, images[:50], labels[:50], config)

    try:
        train.fit(images, labels, images, labels, train.TrainConfig(batch_size=30))
        batch_error = ""
    except MnistJaxError as err:
        batch_error = str(err)

    leaves = jax.tree.leaves((state.params, state.opt_state))
    np.savez(out / "state.npz", *[np.asarray(leaf) for leaf in leaves])
    facts = {
        "devices": jax.device_count(),
        "step": int(state.step),
        "losses": [r.train_loss for r in history],
        "local": str(state.params[0]["w"].sharding),
        "batch_error": batch_error,
        **compiled_facts(config, 200),
    }
    (out / "facts.json").write_text(json.dumps(facts))


if __name__ == "__main__":
    main(sys.argv[1])
