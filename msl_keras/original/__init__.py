"""Everything about the authors' original code, kept apart from the method (their
repository: mangalutsav/Multi-Stage-LSTM-for-Action-Anticipation; its defects are in
`docs/original-code.md`).

- `weights`: its `.h5` weight files, loaded into our models.
- `features`: its per-video `.npy` features, imported into a `FeatureStore`.
- `losses`: its loss variants (`original_*` in `msl_keras.losses.get_loss`).
- `scheme`: its per-frame extraction, for `benchmarks/bench_original_scheme.py`.
"""
