"""Fig. 6 of the paper: accuracy against frames observed for each loss, with temporal
average pooling of the predictions (Sec. 3.2.2).

    python experiments/fig6_pooling.py --root data/UCF-101 --scale paper     # GPU, split 1
    python experiments/fig6_pooling.py --root data/generated --scale cpu

The same MS-LSTMs as `fig5_losses.py` (run after it, only the evaluation runs again), scored
on the running mean of the probabilities of the frames seen so far. Compared with the
paper's Fig. 6 (UCF-101 split 1; a figure, no table): pooling raises the accuracy, most at
the first frames, and our loss stays the best with it. `mean_gain_from_pooling` in the
results is the mean over t of pooled minus raw accuracy. Writes
`<output-dir>/fig6_pooling/results.json` and `fig6_pooling.png`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loss_curves import run_loss_curves  # noqa: E402


def main(argv=None):
    return run_loss_curves("fig6", Path(__file__).name, __doc__, argv)


if __name__ == "__main__":
    main()
