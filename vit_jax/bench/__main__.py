import sys

from vit_jax.bench.measure import main

sys.exit(main())
