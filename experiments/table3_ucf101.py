"""Table 3 of the paper: action anticipation on UCF-101, earliest and latest accuracy.

    python experiments/table3_ucf101.py --root data/UCF-101 --scale paper      # GPU, ImageNet
    python experiments/table3_ucf101.py --root data/UCF-101 --scale cpu --splits 1
    python experiments/table3_ucf101.py --root data/generated --scale cpu      # generated clips

Mean over the official splits 1-3 (`--splits`). Compared with the paper's Table 3
(earliest = the first 2 frames, about 1% of a clip; latest = the whole clip, at most T = 50
frames):

    Context-Aware + loss of [11] (Jain)     30.6%   71.1%
    Context-Aware + loss of [21] (Ma)       22.6%   73.1%
    Ours (MS-LSTM + anticipation loss)      80.5%   83.4%

The split lists are read from `<root>/ucfTrainTestlist` (or `--set data.lists_dir=...`).
Prints ours beside the paper's and writes `<output-dir>/table3_ucf101/results.json` and
`accuracy_vs_observed.png`. See `tables.py` for what is run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tables import run_table  # noqa: E402


def main(argv=None):
    return run_table("table3", Path(__file__).name, __doc__, argv)


if __name__ == "__main__":
    main()
