"""Fig. 5 of the paper: accuracy against frames observed for each loss (no pooling).

    python experiments/fig5_losses.py --root data/UCF-101 --scale paper      # GPU, split 1
    python experiments/fig5_losses.py --root data/generated --scale cpu

One MS-LSTM per loss on the same features: ours (Eq. 1), cross-entropy on the last step
(CE, Eq. 7), exponential CE (ECE, Eq. 8), linearly growing loss (LGL, Eq. 9), Jain et al.
[11] and Ma et al.'s ranking loss on the detection score [21] (`--losses` to choose). The
accuracy of stage 2 after t observed frames, t = 1..T, from the per-frame prediction.

Compared with the paper's Fig. 5 (UCF-101 split 1; a figure, no table): "with only 2 frames
observed, our loss yields an accuracy similar to the other losses with 30-40 frames". The
table printed gives each loss's accuracy at t = 1, 2, the mean over t, t = T, and the first
t at which it reaches our loss's accuracy at t = 2. Writes
`<output-dir>/fig5_losses/results.json` and `fig5_losses.png`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loss_curves import run_loss_curves  # noqa: E402


def main(argv=None):
    return run_loss_curves("fig5", Path(__file__).name, __doc__, argv)


if __name__ == "__main__":
    main()
