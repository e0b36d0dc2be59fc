#!/usr/bin/env python
"""Times torch_tconv against torch.nn.functional: the checkout's entry point
to the benchmark, whose code is the package's (torch_tconv/bench.py, also
run as `python -m torch_tconv bench`). Here results go to bench/results/ by
default, and the checkout's in-place build is the one measured when there is
one.

    python bench/benchmark.py [--device cpu|cuda|all] [--out DIR] [--quick]
                              [--dtypes float32 ...] [--cases TEXT ...] [--repeats N]

The other scripts of bench/ `import benchmark` for the suite, the timers and
the helpers, which this module re-exports.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Benchmark the checkout's in-place build when there is one, rather than
# whatever torch_tconv happens to be installed. Before `import torch`, which
# imports torch_tconv through its entry point when it is installed.
if any((REPO_ROOT / "torch_tconv").glob("_C*.so")):
    sys.path.insert(0, str(REPO_ROOT))

from torch_tconv import bench as _bench  # noqa: E402
from torch_tconv.bench import *  # noqa: E402,F401,F403  (the suite, timers and helpers)

RESULTS_DIR = REPO_ROOT / "bench" / "results"


def main(argv=None):
    _bench.main(argv, default_out=RESULTS_DIR)


if __name__ == "__main__":
    main()
