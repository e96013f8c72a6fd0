import sys

from mnist_jax.cli import main

sys.exit(main())
