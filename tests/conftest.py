"""Shared test set-up."""

import os

# The tests compile many tiny programs, one per drawn shape; at these sizes
# XLA's LLVM optimisation costs more time than it saves.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
).strip()
