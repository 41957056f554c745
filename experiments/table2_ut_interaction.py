"""Table 2 of the paper: action anticipation on UT-Interaction, earliest and latest accuracy.

    python experiments/table2_ut_interaction.py --root data/ut-interaction --scale paper  # GPU
    python experiments/table2_ut_interaction.py --root ../shared/data/ut_interaction --scale cpu \
        --weights data/weights/vgg16_hed_bsds500_notop.h5
    python experiments/table2_ut_interaction.py --root data/generated --scale cpu

Protocol: the 10 leave-one-sequence-out folds of set 1 and of set 2 (20 folds), mean over
folds. Compared with the paper's Table 2 (earliest = first 50% of each clip, latest = the
whole clip; the paper's model sees at most T = 50 frames):

    Context-Aware + loss of [11] (Jain)     45.0%   65.0%
    Context-Aware + loss of [21] (Ma)       48.0%   60.0%
    Ours (MS-LSTM + anticipation loss)      84.0%   90.0%

Prints ours beside the paper's and writes `<output-dir>/table2_ut_interaction/results.json`
and `accuracy_vs_observed.png`. `--sets 1` or `--folds set1_seq1 ...` run part of the
protocol. See `tables.py` for what is run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tables import run_table  # noqa: E402


def main(argv=None):
    return run_table("table2", Path(__file__).name, __doc__, argv)


if __name__ == "__main__":
    main()
