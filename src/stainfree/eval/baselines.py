"""Baselines beside the network: a features random forest and the majority class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..utils import StainfreeError

BASELINES = ("majority", "area_svm", "features_rf")
#: Baselines that are offered but not run by default (they cost as much as the model).
OPTIONAL_BASELINES = ("outline_cnn",)


# ---------------------------------------------------------------------- baselines
def run_baseline(
    name: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, classes: Sequence[str], *, random_state: int = 0
) -> np.ndarray:
    """Class probabilities of a baseline trained on ``train_x`` for the cells of ``test_x``.

    ``majority`` predicts the training class frequencies; ``area_svm`` is an RBF SVM (gamma 1)
    on the standardised log cell area (Ogawa et al.), its probabilities a softmax of the
    one-vs-rest decision values; ``features_rf`` a class-balanced random forest (300 trees) on all
    handcrafted features. Missing measurements (NaN: an empty mask, undefined texture) are filled
    with the training cells' median.

    Parameters
    ----------
    name : str
        One of :data:`BASELINES`.
    train_x, test_x : ndarray
        Features of the training and test cells (cells x features; the area alone for ``area_svm``).
    train_y : ndarray
        Class of each training cell.
    classes : sequence of str
        The classes, in the order of the returned columns.
    random_state : int, default 0
        Seed of the SVM and the random forest.

    Returns
    -------
    ndarray
        Test cells x classes probabilities.

    Raises
    ------
    StainfreeError
        For an unknown baseline.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.eval.baselines import run_baseline
    >>> train_y = np.array(["a", "a", "a", "b"])
    >>> run_baseline("majority", np.zeros((4, 1)), train_y, np.zeros((2, 1)), ["a", "b"])
    array([[0.75, 0.25],
           [0.75, 0.25]])
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    classes = list(classes)
    train_y = np.asarray(train_y, dtype=object).astype(str)
    if name == "majority":
        freq = np.array([np.mean(train_y == c) for c in classes])
        return np.tile(freq, (len(test_x), 1))
    if name == "area_svm":
        # SVC's own probabilities are deprecated; a softmax of the one-vs-rest decision values
        # ranks cells the same way for the ROC and picks the same class as predict()
        model = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            SVC(kernel="rbf", gamma=1.0, class_weight="balanced", decision_function_shape="ovr", random_state=random_state),
        )
        model.fit(np.log1p(train_x), train_y)
        d = model.decision_function(np.log1p(test_x))
        d = np.stack([-d, d], axis=1) if d.ndim == 1 else d
        e = np.exp(d - d.max(axis=1, keepdims=True))
        svm_p = e / e.sum(axis=1, keepdims=True)
        proba = np.zeros((len(test_x), len(classes)))
        for j, c in enumerate(model.classes_):
            proba[:, classes.index(c)] = svm_p[:, j]
        return proba
    elif name == "features_rf":
        model = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            RandomForestClassifier(
                n_estimators=300, class_weight="balanced_subsample", min_samples_leaf=2, n_jobs=-1, random_state=random_state
            ),
        )
    else:
        raise StainfreeError(f"unknown baseline {name!r} (choose from {', '.join(BASELINES)})")
    model.fit(train_x, train_y)
    proba = np.zeros((len(test_x), len(classes)))
    for j, c in enumerate(model.classes_):
        proba[:, classes.index(c)] = model.predict_proba(test_x)[:, j]
    return proba


def align_features(features: pd.DataFrame, cell_ids: Sequence[str], *, source: str = "the features") -> pd.DataFrame:
    """The rows of a feature table for ``cell_ids``, in that order.

    Parameters
    ----------
    features : DataFrame
        A feature table with a ``cell_id`` column (a repeated id: its first row is used).
    cell_ids : sequence of str
        The cells wanted.
    source : str, default "the features"
        What the table is, for the error messages.

    Returns
    -------
    DataFrame
        One row per cell of ``cell_ids``, with a fresh index.

    Raises
    ------
    StainfreeError
        When the table has no ``cell_id`` column or lacks some of the cells.

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.eval.baselines import align_features
    >>> table = pd.DataFrame({"cell_id": ["c1", "c2", "c3"], "area": [10.0, 20.0, 30.0]})
    >>> align_features(table, ["c3", "c1"])
      cell_id  area
    0      c3  30.0
    1      c1  10.0
    """
    if "cell_id" not in features.columns:
        raise StainfreeError(f"{source} have no cell_id column")
    indexed = features.drop_duplicates("cell_id")
    indexed.index = indexed["cell_id"].astype(str)
    missing = [c for c in cell_ids if c not in indexed.index]
    if missing:
        raise StainfreeError(f"{source} lack {len(missing)} of the cells (first: {missing[0]}); measure this set with `stainfree features`")
    return indexed.loc[list(cell_ids)].reset_index(drop=True)


def feature_arrays(
    features: pd.DataFrame, *, need_area: bool = False, source: str = "the features"
) -> tuple[np.ndarray, np.ndarray | None]:
    """The feature matrix of the ``features_rf`` baseline and the area column of ``area_svm``.

    Parameters
    ----------
    features : DataFrame
        A feature table: ``cell_id`` and numeric feature columns (as ``stainfree features`` writes).
    need_area : bool, default False
        Refuse a table without ``AreaShape_Area`` (the ``area_svm`` baseline needs it).
    source : str, default "the features"
        What the table is, for the error messages.

    Returns
    -------
    matrix : ndarray
        Cells x features (every column but ``cell_id``), float64.
    area : ndarray or None
        Cells x 1, ``AreaShape_Area``; None when the table has no such column.

    Raises
    ------
    StainfreeError
        When a column is not numeric, or ``need_area`` and the table has no ``AreaShape_Area``.

    Examples
    --------
    >>> import pandas as pd
    >>> from stainfree.eval.baselines import feature_arrays
    >>> table = pd.DataFrame({"cell_id": ["c1", "c2"], "AreaShape_Area": [10, 20], "ecc": [0.5, 0.1]})
    >>> matrix, area = feature_arrays(table, need_area=True)
    >>> matrix.tolist(), area.tolist()
    ([[10.0, 0.5], [20.0, 0.1]], [[10.0], [20.0]])
    """
    values = features.drop(columns=["cell_id"], errors="ignore")
    text = [str(c) for c in values.columns if not (pd.api.types.is_numeric_dtype(values[c]) or pd.api.types.is_bool_dtype(values[c]))]
    if text:
        raise StainfreeError(f"{source} have non-numeric column(s) {', '.join(text[:3])}; give a table from `stainfree features`")
    if need_area and "AreaShape_Area" not in values.columns:
        raise StainfreeError(
            f"{source} have no AreaShape_Area column, which the area_svm baseline needs; measure this set with "
            "`stainfree features`, or leave area_svm out of the baselines"
        )
    area = values["AreaShape_Area"].to_numpy(np.float64)[:, None] if "AreaShape_Area" in values.columns else None
    return values.to_numpy(np.float64), area
