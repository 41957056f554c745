"""Stage 1: check a dataset folder and build its clip index, split into folds.

`prepare(config)` reads `config.data.dataset` with its reader (`msl_keras.data.*`) into
a `DatasetIndex`: one `Fold` per protocol fold, each holding every clip with its role
("train", "validation" carved from train, or "test"). Generated: one fold, "split1";
UCF-101, JHMDB-21 and imported features: the split `data.split`, fold "split<n>";
UT-Interaction (paper Sec. 4.1): leave-one-sequence-out, fold "set<s>_seq<q>" for
`data.ut_test_sequence`, or all 10 folds of `data.ut_set` when it is None, or all 20
folds of both sets when `ut_set` is None too (Table 2). The readers' `DatasetError`s
(missing folder or list, with the download URL) surface as they are.
"""

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Optional

from msl_keras.data.records import ROLES
from msl_keras.errors import ConfigError, DatasetError


@dataclasses.dataclass
class Fold:
    """One protocol fold: every clip of the dataset with its role in this fold.

    `name` is also its folder in the run directory ("split1", "set1_seq3"); `subset`
    the part of the protocol reported on its own (UT-Interaction's "set1" or "set2",
    paper Table 2; `orchestrator.summarize`), else None.
    """

    name: str
    records: list
    subset: Optional[str] = None

    def by_role(self, role):
        """The fold's records with `role`, in index order."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}. Received: role={role!r}")
        return [r for r in self.records if r.role == role]

    def counts(self):
        """`{role: {"clips": n, "groups": n, "classes": n}}` for every role."""
        return {
            role: {
                "clips": len(rs := self.by_role(role)),
                "groups": len({r.group for r in rs}),
                "classes": len({r.label for r in rs}),
            }
            for role in ROLES
        }


@dataclasses.dataclass
class DatasetIndex:
    """A dataset's clips, classes (in label order) and folds, as `prepare` found them.

    `missing` holds the listed records whose clip is not on disk (only with
    `prepare(..., check_files=False)`; they are left out of the folds).
    """

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
            f"Dataset index of '{self.dataset}' has no fold {name!r}. Folds: "
            f"{', '.join(self.fold_names)}."
        )

    def clips(self):
        """Every distinct clip of the index (over all folds), by clip id."""
        unique = {}
        for fold in self.folds:
            for record in fold.records:
                unique.setdefault(record.clip_id, record)
        return list(unique.values())


def prepare(config, check_files=True, generate=True):
    """Builds the `DatasetIndex` of `config.data` (see the module docstring).

    Args:
        check_files: UCF-101 and JHMDB: fail on a listed clip that is not on disk (the
            reader's `DatasetError`); `False` moves them to `index.missing`.
        generate: "generated" only: write the clips into `data.root` when the folder
            does not exist or is empty.

    Raises:
        DatasetError: the dataset folder, a split list or (check_files) a clip is
            missing; the message names the expected path and the download URL.
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
    if not check_files:
        _move_missing(index)
    return index


def _read_split(config, check_files, generate):
    """`(records, class_names)` of a dataset with one fold per split."""
    data = config.data
    root = Path(data.root)
    draw = {"validation_fraction": data.validation_fraction, "seed": config.seed}
    official = {"split": data.split, "check_files": check_files, **draw}
    if data.dataset == "generated":
        from msl_keras.data import generated

        if generate and (
            not root.exists() or (root.is_dir() and not any(root.iterdir()))
        ):
            generated.generate_dataset(
                root,
                clips_per_class=data.generated_clips_per_class,
                num_groups=data.generated_groups,
                seed=data.generated_seed,
            )
        return generated.read_generated(root, **draw), generated.class_names(root)
    if data.dataset == "ucf101":
        from msl_keras.data import ucf101

        records = ucf101.read_ucf101(root, lists_dir=data.lists_dir, **official)
        lists_dir = Path(data.lists_dir or root / ucf101.LISTS_FOLDER)
        return records, ucf101.class_names(lists_dir)
    if data.dataset == "jhmdb":
        from msl_keras.data import jhmdb

        records = jhmdb.read_jhmdb(root, splits_dir=data.lists_dir, **official)
        return records, jhmdb.class_names()
    from msl_keras.data import imported

    with imported.FeatureSource.open(root) as source:
        records = imported.imported_records(source, split=data.split, **draw)
        return records, list(source.class_names)


def _prepare_ut_interaction(config):
    from msl_keras.data import ut_interaction

    data = config.data
    root = Path(data.root)
    if data.ut_set is None:
        if data.ut_test_sequence is not None:
            raise ConfigError(
                "data.ut_test_sequence needs data.ut_set (1 or 2). Received: "
                f"data.ut_set=None, data.ut_test_sequence={data.ut_test_sequence}"
            )
        pairs = ut_interaction.ut_interaction_folds(root)
    elif data.ut_set not in ut_interaction.SETS:
        raise ConfigError(
            f"data.ut_set must be 1, 2 or None (both sets). Received: "
            f"data.ut_set={data.ut_set!r}"
        )
    elif data.ut_test_sequence is None:
        pairs = _folds_of_one_set(root, data.ut_set)
    else:
        pairs = [(data.ut_set, int(data.ut_test_sequence))]
    folds = []
    for set_number, sequence in pairs:
        try:
            records = ut_interaction.read_ut_interaction(
                root,
                set_number,
                sequence,
                validation_fraction=data.validation_fraction,
                seed=config.seed,
            )
        except ValueError as error:
            if isinstance(error, DatasetError):
                raise
            raise ConfigError(str(error)) from None
        folds.append(
            Fold(f"set{set_number}_seq{sequence}", records, subset=f"set{set_number}")
        )
    return DatasetIndex(
        "ut_interaction", str(root), ut_interaction.class_names(), folds
    )


def _folds_of_one_set(root, set_number):
    """The folds of one set (`ut_interaction_folds` needs both sets on disk)."""
    from msl_keras.data import ut_interaction

    records = ut_interaction.read_ut_interaction(
        root, set_number, ut_interaction.SETS[set_number][0], validation_fraction=0
    )
    sequences = sorted({int(r.group.removeprefix("sequence")) for r in records})
    missing = sorted(set(ut_interaction.SETS[set_number]) - set(sequences))
    if missing:
        raise DatasetError(
            f"UT-Interaction set {set_number} has no clip of sequence(s) {missing} in "
            f"'{ut_interaction.set_folder(root, set_number)}'. Download "
            f"segmented_set{set_number}.zip from {ut_interaction.URL} again."
        )
    return [(set_number, s) for s in sequences]


def _move_missing(index):
    """Moves the records whose clip is not on disk from the folds to `index.missing`."""
    missing = {}
    for fold in index.folds:
        for record in fold.records:
            if not Path(record.path).exists():
                missing.setdefault(record.clip_id, record)
        fold.records = [r for r in fold.records if r.clip_id not in missing]
    index.missing = list(missing.values())


def describe(index):
    """A readable report of a `DatasetIndex`: classes, clips per fold and role, missing.

    One line for the classes, one for the clip and fold counts, a table of clips/groups
    per fold and role, the fold's problems (no test clip, ...), and the missing clips.
    """
    names = index.class_names
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    folds = index.folds
    width = max([len("fold")] + [len(f.name) for f in folds])
    lines = [
        f"Dataset {index.dataset} at '{index.root}' ({len(names)} classes: {shown})",
        f"{len(index.clips())} clips in {len(folds)} fold{'s' * (len(folds) != 1)}",
        f"{'fold':<{width}}"
        + "".join(f"  {role + ' clips/groups':>24}" for role in ROLES),
    ]
    for fold in folds:
        counts = fold.counts()
        cells = [f"{counts[r]['clips']}/{counts[r]['groups']}" for r in ROLES]
        lines.append(f"{fold.name:<{width}}" + "".join(f"  {c:>24}" for c in cells))
    for fold in folds:
        if problems := _fold_problems(fold, len(names)):
            lines.append(f"{fold.name}: " + "; ".join(problems))
    missing = index.missing
    listed = ", ".join(r.clip_id for r in missing[:10])
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    lines.append(
        f"Missing clips: {len(missing)} listed but not on disk ({listed}{more})"
        if missing
        else "Missing clips: none"
    )
    return "\n".join(lines)


def _fold_problems(fold, num_classes):
    """Warnings a user should see before training on `fold`."""
    counts = {role: c["clips"] for role, c in fold.counts().items()}
    problems = [
        problem
        for role, problem in (
            ("train", "no training clip"),
            ("test", "no test clip"),
            ("validation", "no validation clip (the last epoch is kept)"),
        )
        if counts[role] == 0
    ]
    per_class = Counter(r.label for r in fold.by_role("train"))
    absent = [c for c in range(num_classes) if per_class[c] == 0]
    if absent and counts["train"]:
        problems.append(f"classes without training clips: {absent}")
    return problems
