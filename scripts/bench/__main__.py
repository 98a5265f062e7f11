"""`python -m posezoo.scripts.bench`: the command line, or one of the child processes it starts
(`--one`: a worker; `--baseline FMT`: the runtime-only baseline; see worker.py)."""
import sys

from posezoo.scripts.bench.cli import main
from posezoo.scripts.bench.worker import baseline_main, worker_main

argv = sys.argv[1:]
if argv[:1] == ["--one"]:
    sys.exit(worker_main())
if argv[:1] == ["--baseline"]:
    sys.exit(baseline_main(argv[1]))
sys.exit(main(argv))
