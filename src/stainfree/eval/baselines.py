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
    name: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, classes: Sequence[str], *, seed: int = 0
) -> np.ndarray:
    """Class probabilities (test cells x classes) of a baseline trained on ``train_x``.

    ``majority`` predicts the training class frequencies; ``area_svm`` is an RBF SVM (gamma 1)
    on the standardised log cell area (Ogawa et al.); ``features_rf`` a class-balanced random
    forest on all handcrafted features. Missing measurements (NaN: an empty mask, undefined
    texture) are filled with the training cells' median.
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
            SVC(kernel="rbf", gamma=1.0, class_weight="balanced", decision_function_shape="ovr", random_state=seed),
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
            RandomForestClassifier(n_estimators=300, class_weight="balanced_subsample", min_samples_leaf=2, n_jobs=-1, random_state=seed),
        )
    else:
        raise StainfreeError(f"unknown baseline {name!r} (choose from {', '.join(BASELINES)})")
    model.fit(train_x, train_y)
    proba = np.zeros((len(test_x), len(classes)))
    for j, c in enumerate(model.classes_):
        proba[:, classes.index(c)] = model.predict_proba(test_x)[:, j]
    return proba


def align_features(features: pd.DataFrame, cell_ids: Sequence[str], *, source: str = "the features") -> pd.DataFrame:
    """The rows of a feature table (with ``cell_id``) for ``cell_ids``, in that order."""
    if "cell_id" not in features.columns:
        raise StainfreeError(f"{source} have no cell_id column")
    indexed = features.drop_duplicates("cell_id")
    indexed.index = indexed["cell_id"].astype(str)
    missing = [c for c in cell_ids if c not in indexed.index]
    if missing:
        raise StainfreeError(f"{source} lack {len(missing)} of the cells (first: {missing[0]}); measure this set with `stainfree features`")
    return indexed.loc[list(cell_ids)].reset_index(drop=True)
