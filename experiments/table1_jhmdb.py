"""Table 1 of the paper: action anticipation on JHMDB-21, earliest and latest accuracy.

    python experiments/table1_jhmdb.py --root data/JHMDB --scale paper     # GPU, ImageNet
    python experiments/table1_jhmdb.py --root data/JHMDB --scale cpu
    python experiments/table1_jhmdb.py --root data/generated --scale cpu   # generated clips

Compared with the paper's Table 1 (mean over the 3 official splits; earliest = first 20% of
each clip, latest = the whole clip, at most T = 50 frames):

    Context-Aware + loss of [11] (Jain)     28%   43%
    Context-Aware + loss of [21] (Ma)       33%   39%
    Ours (MS-LSTM + anticipation loss)      55%   58%

Prints ours beside the paper's and writes `<output-dir>/table1_jhmdb/results.json` and
`accuracy_vs_observed.png`. See `tables.py` for what is run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tables import run_table  # noqa: E402


def main(argv=None):
    return run_table("table1", Path(__file__).name, __doc__, argv)


if __name__ == "__main__":
    main()
