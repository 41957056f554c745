"""Everything about the authors' original code.

Their repository: mangalutsav/Multi-Stage-LSTM-for-Action-Anticipation.

Kept apart from the method itself, which lives in the rest of the package; see
`docs/original-code.md` for each of its defects and how to reproduce its behaviour.

- `weights`: reading the `.h5` files its scripts saved and loading them into our models.
- `features`: its per-video `.npy` features, imported into a `FeatureStore`.
- `losses`: its loss variants (`original_*` in `msl_keras.losses.get_loss`).
- `scheme`: its per-frame, two-model feature extraction, re-implemented for the speed
  benchmark (`benchmarks/bench_original_scheme.py`).
"""
