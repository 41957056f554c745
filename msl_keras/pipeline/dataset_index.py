"""Stage 1: check a dataset folder and build its clip index, split into folds.

`prepare(config)` reads `config.data.dataset` with its reader (`msl_keras.data.*`) into
a `DatasetIndex`: one `Fold` per protocol fold, each holding every clip with its role
("train", "validation" carved from train, or "test"). Generated: one fold, "split1";
UCF-101, JHMDB-21 and imported features: the split `data.split`, fold "split<n>";
UT-Interaction (paper Sec. 4.1): leave-one-sequence-out, fold "set<s>_seq<q>" for
`data.ut_test_sequence`, or all 10 folds of `data.ut_set` when it is None, or all 20
folds of both sets when `ut_set` is None too (Table 2).
"""

import dataclasses
from pathlib import Path

from msl_keras.data import generated, imported, jhmdb, ucf101, ut_interaction
from msl_keras.data.records import ROLES, by_role, summarize
from msl_keras.errors import ConfigError, listing


@dataclasses.dataclass
class Fold:
    """One protocol fold: every clip of the dataset with its role in this fold; `name`
    is its run folder ("split1", "set1_seq3"), `subset` the part of the protocol
    reported on its own (UT-Interaction's "set1" or "set2", Table 2) or None."""

    name: str
    records: list
    subset: str | None = None

    def by_role(self, role):
        """The fold's records with `role`, in index order."""
        return by_role(self.records, role)

    def counts(self):
        """`{role: {"clips": n, "groups": n, "classes": n}}` for every role."""
        return summarize(self.records)


@dataclasses.dataclass
class DatasetIndex:
    """A dataset's clips, classes (in label order) and folds, as `prepare` found them;
    `missing`: the listed records whose clip is not on disk (`check_files=False`)."""

    dataset: str
    root: str
    class_names: list
    folds: list
    missing: list = dataclasses.field(default_factory=list)

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def fold_names(self):
        return [fold.name for fold in self.folds]

    def fold(self, name):
        """The `Fold` called `name` (a `Fold` is returned as it is)."""
        if isinstance(name, Fold):
            return name
        for fold in self.folds:
            if fold.name == name:
                return fold
        raise ConfigError(
            f"Dataset index of '{self.dataset}' has no fold {name!r}. Folds of this "
            f"config: {listing(self.fold_names)}."
        )

    def clips(self):
        """Every distinct clip of the index (its first record over the folds)."""
        unique = {}
        for fold in self.folds:
            for record in fold.records:
                unique.setdefault(record.clip_id, record)
        return list(unique.values())


def prepare(config, check_files=True, generate=True):
    """Builds the `DatasetIndex` of `config.data` (see the module docstring).

    `check_files` (UCF-101, JHMDB): fail on a listed clip not on disk, else move it to
    `index.missing`. `generate` ("generated"): write the clips into an absent or empty
    `data.root`. The readers' `DatasetError`s surface as they are.
    """
    data = config.data
    if data.dataset == "ut_interaction":
        index = _prepare_ut_interaction(config)
    else:
        records, class_names = _read_split(config, check_files, generate)
        fold = "split1" if data.dataset == "generated" else f"split{data.split}"
        index = DatasetIndex(
            data.dataset, str(Path(data.root)), list(class_names), [Fold(fold, records)]
        )
    if not check_files:  # the records whose clip is not on disk go to `index.missing`
        index.missing = [r for r in index.clips() if not Path(r.path).exists()]
        gone = {r.clip_id for r in index.missing}
        for fold in index.folds:
            fold.records = [r for r in fold.records if r.clip_id not in gone]
    return index


def _read_split(config, check_files, generate):
    """`(records, class_names)` of a dataset with one fold per split."""
    data, root = config.data, Path(config.data.root)
    draw = {"validation_fraction": data.validation_fraction, "seed": config.seed}
    official = {"split": data.split, "check_files": check_files, **draw}
    if data.dataset == "generated":
        empty = not root.exists() or root.is_dir() and not any(root.iterdir())
        if generate and empty:
            generated.generate_dataset(
                root, clips_per_class=data.generated_clips_per_class,
                num_groups=data.generated_groups, seed=data.generated_seed,
            )  # fmt: skip
        return generated.read_generated(root, **draw), generated.class_names(root)
    if data.dataset == "ucf101":
        records = ucf101.read_ucf101(root, lists_dir=data.lists_dir, **official)
        lists_dir = Path(data.lists_dir or root / ucf101.LISTS_FOLDER)
        return records, ucf101.class_names(lists_dir)
    if data.dataset == "jhmdb":
        records = jhmdb.read_jhmdb(root, splits_dir=data.lists_dir, **official)
        return records, jhmdb.class_names()
    with imported.FeatureSource.open(root) as source:
        records = imported.imported_records(source, split=data.split, **draw)
        return records, list(source.class_names)


def _prepare_ut_interaction(config):
    data, root = config.data, Path(config.data.root)
    if data.ut_set is None and data.ut_test_sequence is not None:
        raise ConfigError(
            "data.ut_test_sequence needs data.ut_set (1 or 2). Received: "
            f"data.ut_set=None, {data.ut_test_sequence=}"
        )
    if data.ut_set not in (None, *ut_interaction.SETS):
        raise ConfigError(
            f"data.ut_set must be 1, 2 or None (both sets). Received: {data.ut_set=}"
        )
    if data.ut_test_sequence is not None:
        pairs = [(data.ut_set, int(data.ut_test_sequence))]
    else:
        sets = ut_interaction.SETS if data.ut_set is None else [data.ut_set]
        pairs = ut_interaction.ut_interaction_folds(root, sets)
    folds = []
    for set_number, sequence in pairs:
        try:
            records = ut_interaction.read_ut_interaction(
                root, set_number, sequence, data.validation_fraction, config.seed
            )
        except ValueError as error:  # a test sequence not in the set: the config's
            raise ConfigError(str(error)) from None
        subset = f"set{set_number}"
        folds.append(Fold(f"{subset}_seq{sequence}", records, subset=subset))
    return DatasetIndex(data.dataset, str(root), ut_interaction.class_names(), folds)


def describe(index):
    """A readable report of a `DatasetIndex` (classes, clips per fold and role, ...)."""
    names, folds, missing = index.class_names, index.folds, index.missing
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    width = max([len("fold")] + [len(f.name) for f in folds])
    lines = [
        f"Dataset {index.dataset} at '{index.root}' ({len(names)} classes: {shown})",
        f"{len(index.clips())} clips in {len(folds)} fold{'s' * (len(folds) != 1)}",
        f"{'fold':<{width}}" + "".join(f"  {r + ' clips/groups':>24}" for r in ROLES),
    ]
    # What a user should see before training on a fold, listed after the table.
    problems, empty = [], {"train": "no training clip", "test": "no test clip"}
    empty["validation"] = "no validation clip (the last epoch is kept)"
    for fold in folds:
        counts = fold.counts()
        cells = [f"{counts[r]['clips']}/{counts[r]['groups']}" for r in ROLES]
        lines.append(f"{fold.name:<{width}}" + "".join(f"  {c:>24}" for c in cells))
        found = [text for role, text in empty.items() if counts[role]["clips"] == 0]
        absent = set(range(len(names))) - {r.label for r in fold.by_role("train")}
        if absent and counts["train"]["clips"]:
            found.append(f"classes without training clips: {sorted(absent)}")
        if found:
            problems.append(f"{fold.name}: " + "; ".join(found))
    lines += problems
    if missing:
        listed = listing([r.clip_id for r in missing], limit=10)
        lines.append(f"Missing clips: {len(missing)} listed but not on disk ({listed})")
    else:
        lines.append("Missing clips: none")
    return "\n".join(lines)
