"""``python -m bench``: every benchmark, one table of ratios, ``docs/benchmarks.md``."""

from bench.run_all import main

raise SystemExit(main())
