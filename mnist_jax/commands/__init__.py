"""Subcommands of the ``mnist-jax`` command line, one module each."""
