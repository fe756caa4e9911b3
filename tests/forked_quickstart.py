"""``python -m dft quickstart ARGS`` with the stages it launches through ``python -m``/torchrun forked from this
process (tests/forked.py) rather than started as interpreters; bash scripts (``main_ppo``) and git run for real.

Run it with ``run_forked("forked_quickstart", args, ...)``: the quickstart's own code, stage commands and outputs
as a user's run has them, less ~15 s of interpreter start-up and shut-down per stage.
"""

import sys

from forked import forking_subprocess

from dft.cli.quickstart import main, table1, table3

if __name__ == "__main__":
    table1.subprocess = table3.subprocess = forking_subprocess()
    main.main(sys.argv[1:])
