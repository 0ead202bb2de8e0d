"""Every command with bad input: one line on stderr, a non-zero exit, no traceback, nothing written.

The table below walks each command of ``stainfree --help`` and its options with values of the
wrong type, out of range, missing or of the wrong kind of file, unknown names, sets that cannot
be trained on (no cells, one class, one group, NaN pixels), channels that do not match and
outputs that exist or cannot be made. ``{name}`` in a case stands for a prepared input (see
:func:`inputs`); ``{out}`` for a path in the test's own empty folder.
"""

import os
import shlex
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, write_png, write_tif

# cases that another branch of issue 16 fixes; strict=False so they pass whichever lands first

TRAIN_BAD = [
    "--ema 1",
    "--ema -0.5",
    "--epochs 0",
    "--epochs -1",
    "--epochs abc",
    "--batch-size 0",
    "--batch-size 1",
    "--lr 0",
    "--lr -1",
    "--lr abc",
    "--optimizer lbfgs",
    "--loss-weighting cube",
    "--sampling random",
    "--monitor accuracy",
    "--patience 0",
    "--val-fraction 1.5",
    "--val-fraction -0.1",
    "--augment spin",
    "--blackout half",
    "--normalisation zscore",
    "--input-size 0",
    "--model resnet999",
    "--seed abc",
]

CASES = {
    # import SRC -o OUT
    "import": [
        "{missing} -o {out}/a.cells",
        "{txt} -o {out}/a.cells",
        "{emptydir} -o {out}/a.cells",
        "{badcsv} -o {out}/a.cells",
        "{src} -o {out}/a.cells --layout zip",
        "{src} -o {out}/a.cells --layout manifest",
        "{src} -o {out}/a.cells --layout ifc",
        "{src} -o {out}/a.cells --size abc",
        "{src} -o {out}/a.cells --size 0",
        "{src} -o {out}/a.cells --size -4",
        "{src} -o {out}/a.cells --crop 0",
        "{src} -o {out}/a.cells --crop -1",
        "{src} -o {out}/a.cells --pixel-size abc",
        "{src} -o {out}/a.cells --pixel-size 0",
        "{src} -o {out}/a.cells --pixel-size -0.3",
        "{src} -o {out}/a.cells --group flask=(",
        "{src} -o {out}/a.cells --group flask",
        "{src} -o {out}/a.cells --merge-classes nonsense",
        "{src} -o {out}/a.cells --merge-classes round,nope=x",
        "{src} -o {out}/a.cells --channels X,Y,Z",
        "{src} -o {exists}",
        "{src} -o {txt}/a.cells",
    ],
    "info": ["{missing}", "{txt}", "{emptydir}", "{emb}", "{brokencells}", "{cells} --json extra"],
    "synth": [
        "-o {out}/s.cells --cells-per-class 0",
        "-o {out}/s.cells --cells-per-class -1",
        "-o {out}/s.cells --cells-per-class abc",
        "-o {out}/s.cells --size 0",
        "-o {out}/s.cells --size 8",
        "-o {out}/s.cells --size abc",
        "-o {out}/s.cells --flasks-per-line 0",
        "-o {out}/s.cells --seed abc",
        "-o {exists} --cells-per-class 2",
        "-o {txt}/s.cells --cells-per-class 2",
    ],
    "models": ["extra", "--bogus"],
    "demo": [
        "-o {out}/d --epochs 0",
        "-o {out}/d --epochs -1",
        "-o {out}/d --epochs abc",
        "-o {out}/d --seed abc",
        "-o {exists}",
        "-o {txt}/d",
    ],
    # segment FIELDS -o OUT (classical, so that an unchecked option would still finish quickly)
    "segment": [
        "{missing} -o {out}/s.cells",
        "{txt} -o {out}/s.cells",
        "{fake_tif} -o {out}/s.cells",
        "{emptydir} -o {out}/s.cells",
        "{field} -o {out}/s.cells --method classical --size 0",
        "{field} -o {out}/s.cells --method classical --size abc",
        "{field} -o {out}/s.cells --method classical --seed abc",
        "{field} -o {out}/s.cells --method classical --channels a,b",
        "{field} -o {out}/s.cells --method classical --planes slices",
        "{field} -o {out}/s.cells --method classical --pixel-size 0",
        "{field} -o {out}/s.cells --method classical --pixel-size -1",
        "{field} -o {out}/s.cells --method classical --mode phase",
        "{field} -o {out}/s.cells --method watershed",
        "{field} -o {out}/s.cells --method learnt --segmenter {missing}",
        "{field} -o {out}/s.cells --method learnt --segmenter {txt}",
        "{field} -o {out}/s.cells --method learnt --segmenter {model}",
        "{field} -o {out}/s.cells --method classical --segment-channel nope",
        "{field} -o {out}/s.cells --method classical --diameter 0",
        "{field} -o {out}/s.cells --method classical --diameter -5",
        "{field} -o {out}/s.cells --method classical --min-area abc",
        "{field} -o {out}/s.cells --method classical --min-area -3",
        "{field} -o {out}/s.cells --method classical --max-area 5parsecs",
        "{field} -o {out}/s.cells --method classical --min-area 50 --max-area 10",
        "{field} -o {out}/s.cells --method classical --smoothing -1",
        "{field} -o {out}/s.cells --method classical --threshold-scale -1",
        "{field} -o {out}/s.cells --method classical --local-window -1",
        "{field} -o {out}/s.cells --method classical --min-distance -1",
        "{field} -o {out}/s.cells --method classical --workers -1",
        "{field} -o {out}/s.cells --method classical --workers 2 --scheduler tcp://127.0.0.1:9",
        "{field} -o {out}/s.cells --points {missing}",
        "{field} -o {out}/s.cells --points {txt}",
        "{field} -o {out}/s.cells --points {badcsv}",
        "{field} -o {out}/s.cells --method classical --label-channel nope",
        "{field} -o {out}/s.cells --method classical --label-names HEK",
        "{field} -o {out}/s.cells --method classical --label-radius -1",
        "{field} -o {out}/s.cells --method classical --background-sigma 0",
        "{field} -o {out}/s.cells --method classical --min-posterior 2",
        "{field} -o {out}/s.cells --method classical --min-posterior -0.1",
        "{field} -o {exists} --method classical",
        "{field} -o {txt}/s.cells --method classical",
        "{field} -o {out}/s.cells --method classical --save-labels {txt}/labels",
        "{nanfield} -o {out}/s.cells --method classical",
    ],
    # train-segmenter FIELDS --masks MASKS -o OUT
    "train-segmenter": [
        "{missing} --masks {masks} -o {out}/m.safetensors --steps 1",
        "{txt} --masks {masks} -o {out}/m.safetensors --steps 1",
        "{field} --masks {missing} -o {out}/m.safetensors --steps 1",
        "{field} --masks {txt} -o {out}/m.safetensors --steps 1",
        "{field} --masks {emptydir} -o {out}/m.safetensors --steps 1",
        "{field} --masks {badmasks} -o {out}/m.safetensors --steps 1",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 0",
        "{field} --masks {masks} -o {out}/m.safetensors --steps abc",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 1 --seed abc",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 1 --batch-size 0",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 1 --crop 0",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 1 --lr 0",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 1 --lr -1",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 1 --diameter 0",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 1 --validation 1.5",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 1 --validation -0.1",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 1 --validate-every 0",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 1 --init {missing}",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 1 --init {model}",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 1 --device tpu",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 1 --channels a,b",
        "{field} --masks {masks} -o {out}/m.safetensors --steps 1 --pixel-size 0",
        "{field} --masks {masks} -o {existsfile} --steps 1",
        "{field} --masks {masks} -o {txt}/m.safetensors --steps 1",
    ],
    # score-segmentation FIELDS --truth TRUTH -o OUT
    "score-segmentation": [
        "{missing} --truth {masks} -o {out}/r --method classical",
        "{txt} --truth {masks} -o {out}/r --method classical",
        "{field} --truth {missing} -o {out}/r --method classical",
        "{field} --truth {txt} -o {out}/r --method classical",
        "{field} --truth {badmasks} -o {out}/r --method classical",
        "{field} --truth {emptydir} -o {out}/r --method classical",
        "{field} --truth {masks} -o {out}/r --method watershed",
        "{field} --truth {masks} -o {out}/r --method classical --diameter 0",
        "{field} --truth {masks} -o {out}/r --method classical --mode phase",
        "{field} --truth {masks} -o {out}/r --method classical --segment-channel nope",
        "{field} --truth {masks} -o {exists} --method classical",
        "{field} --truth {masks} -o {txt}/r --method classical",
    ],
    # evaluate CELLS -o OUT (one epoch, the majority baseline, so an unchecked case stays quick)
    "evaluate": [
        *(f"{{cells}} -o {{out}}/r --baselines majority --folds 2 {bad}" for bad in TRAIN_BAD),
        "{missing} -o {out}/r --epochs 1",
        "{txt} -o {out}/r --epochs 1",
        "{emb} -o {out}/r --epochs 1",
        "{emptydir} -o {out}/r --epochs 1",
        "{brokencells} -o {out}/r --epochs 1",
        "{empty} -o {out}/r --epochs 1 --baselines majority --folds 2",
        "{one} -o {out}/r --epochs 1 --baselines majority --folds 2",
        "{nan} -o {out}/r --epochs 1 --baselines majority --folds 2",
        "{cells} -o {out}/r --epochs 1 --baselines majority --group dish --protocol leave-one-group-out",
        "{cells} -o {out}/r --epochs 1 --baselines majority --protocol bogus",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds 0",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds 1",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds -2",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds abc",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds 2 --repeats 0",
        "{cells} -o {out}/r --epochs 1 --baselines majority --group nope",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds 2 --channels nope",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds 2 --merge-classes nonsense",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds 2 --merge-classes round,spindle=one",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds 2 --merge-classes nope=x",
        "{cells} -o {out}/r --epochs 1 --baselines bogus --folds 2",
        "{cells} -o {out}/r --epochs 1 --baselines area_svm --folds 2 --features {missing}",
        "{cells} -o {out}/r --epochs 1 --baselines area_svm --folds 2 --features {txt}",
        "{cells} -o {out}/r --epochs 1 --baselines area_svm --folds 2 --features {fake_parquet}",
        "{cells} -o {out}/r --epochs 1 --baselines area_svm --folds 2 --features {onefeat}",
        "{cells} -o {out}/r --epochs 1 --baselines area_svm --folds 2 --features {noarea}",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds 2 --learning-curve abc",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds 2 --learning-curve 0",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds 2 --learning-curve 1.5",
        "{cells} -o {exists} --epochs 1 --baselines majority --folds 2",
        "{cells} -o {txt}/r --epochs 1 --baselines majority --folds 2",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds 2 --budget ten",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds 2 --budget 0m",
        "{cells} -o {out}/r --epochs 1 --baselines majority --folds 2 --search --budget -3s",
    ],
    # train CELLS -o MODEL.safetensors
    "train": [
        "{missing} -o {out}/m.safetensors --epochs 1",
        "{txt} -o {out}/m.safetensors --epochs 1",
        "{emptydir} -o {out}/m.safetensors --epochs 1",
        "{empty} -o {out}/m.safetensors --epochs 1",
        "{one} -o {out}/m.safetensors --epochs 1",
        "{nan} -o {out}/m.safetensors --epochs 1",
        "{cells} -o {out}/m.safetensors --epochs 1 --channels nope",
        "{cells} -o {out}/m.safetensors --epochs 1 --merge-classes nonsense",
        "{cells} -o {out}/m.safetensors --epochs 1 --merge-classes round,spindle=one",
        "{cells} -o {out}/m --epochs 1",
        "{cells} -o {exists} --epochs 1",
        "{cells} -o {txt}/m.safetensors --epochs 1",
        "{cells} -o {out}/m.safetensors --epochs 1 --budget 5x",
        "{cells} -o {out}/m.safetensors --epochs 1 --group flask",
        "{cells} -o {out}/m.safetensors --epochs 1 --search --group nope",
        *[f"{{cells}} -o {{out}}/m.safetensors {bad}" for bad in TRAIN_BAD],
    ],
    # compare CELLS -o OUT
    "compare": [
        "{missing} -o {out}/c --epochs 1",
        "{txt} -o {out}/c --epochs 1",
        "{empty} -o {out}/c --epochs 1 --folds 2",
        "{one} -o {out}/c --epochs 1 --folds 2",
        "{cells} -o {out}/c --epochs 1 --folds 2 --condition bf",
        "{cells} -o {out}/c --epochs 1 --folds 2 --condition =bf",
        "{cells} -o {out}/c --epochs 1 --folds 2 --condition x=nope",
        "{cells} -o {out}/c --epochs 1 --folds 2 --seeds 0",
        "{cells} -o {out}/c --epochs 1 --folds 0",
        "{cells} -o {out}/c --epochs 1 --folds 2 --protocol bogus",
        "{cells} -o {out}/c --epochs 1 --folds 2 --protocol audit-groups --group flask",
        "{cells} -o {out}/c --epochs 1 --folds 2 --group nope",
        "{cells} -o {out}/c --epochs 1 --folds 2 --model resnet999",
        "{cells} -o {out}/c --epochs 0 --folds 2",
        "{cells} -o {out}/c --epochs abc --folds 2",
        "{cells} -o {out}/c --epochs 1 --folds 2 --merge-classes nonsense",
        "{cells} -o {exists} --epochs 1 --folds 2",
    ],
    # predict MODEL INPUTS -o OUT
    "predict": [
        "{missing} {cells} -o {out}/p.parquet",
        "{txt} {cells} -o {out}/p.parquet",
        "{fake_st} {cells} -o {out}/p.parquet",
        "{cells} {cells} -o {out}/p.parquet",
        "{model} {missing} -o {out}/p.parquet",
        "{model} {txt} -o {out}/p.parquet",
        "{model} {emptydir} -o {out}/p.parquet",
        "{model} {brokencells} -o {out}/p.parquet",
        "{model} {dna} -o {out}/p.parquet",
        "{model} {empty} -o {out}/p.parquet",
        "{model} {nan} -o {out}/p.parquet",
        "{model} {cells} -o {out}/p.parquet --prior uniform",
        "{model} {cells} -o {out}/p.parquet --channels nope",
        "{model} {cells} -o {existsfile}",
        "{model} {cells} -o {txt}/p.parquet",
        "{model} {field} -o {out}/pf --method watershed",
        "{model} {field} -o {out}/pf --method classical --diameter 0",
        "{model} {field} -o {out}/pf --method classical --channels a,b",
        "{model} {fake_tif} -o {out}/pf --method classical",
        "{model} {field} -o {out}/pf --method classical --prior uniform",
        "{model} {field} -o {exists} --method classical",
    ],
    # features CELLS -o OUT
    "features": [
        "{missing} -o {out}/f.parquet",
        "{txt} -o {out}/f.parquet",
        "{emptydir} -o {out}/f.parquet",
        "{empty} -o {out}/f.parquet",
        "{nan} -o {out}/f.parquet",
        "{cells} -o {out}/f.parquet --channels nope",
        "{cells} -o {out}/f.parquet --workers -1",
        "{cells} -o {out}/f.parquet --workers 2 --scheduler tcp://127.0.0.1:9",
        "{cells} -o {out}/f.parquet --mask-channel nope",
        "{cells} -o {out}/f.parquet --scales abc",
        "{cells} -o {out}/f.parquet --scales 0",
        "{cells} -o {out}/f.parquet --gray-levels 1",
        "{cells} -o {out}/f.parquet --gray-levels abc",
        "{cells} -o {out}/f.csv",
        "{cells} -o {existsfile}",
        "{cells} -o {txt}/f.parquet",
    ],
    # explain FEATURES --by COLUMN -o OUT
    "explain": [
        "{missing} --by label --from {cells} -o {out}/x",
        "{txt} --by label --from {cells} -o {out}/x",
        "{fake_parquet} --by label --from {cells} -o {out}/x",
        "{fake_h5ad} --by label --from {cells} -o {out}/x",
        "{cells} --by label --from {cells} -o {out}/x",
        "{feat} --by nope -o {out}/x",
        "{feat} --by nope --from {cells} -o {out}/x",
        "{feat} --by label --from {missing} -o {out}/x",
        "{feat} --by label --from {txt} -o {out}/x",
        "{feat} --by label --from {one} -o {out}/x",
        "{onefeat} --by label --from {one} -o {out}/x",
        "{feat} --by label --from {cells} --groups round -o {out}/x",
        "{feat} --by label --from {cells} --groups round,nope -o {out}/x",
        "{feat} --by flask --from {cells} -o {out}/x",
        "{feat} --by label --from {cells} --svm-top -1 -o {out}/x",
        "{feat} --by label --from {cells} --weak 2 -o {out}/x",
        "{feat} --by label --from {cells} --weak -1 -o {out}/x",
        "{feat} --by label --from {cells} --weak abc -o {out}/x",
        "{feat} --by label --from {cells} -o {exists}",
        "{feat} --by label --from {cells} -o {txt}/x",
    ],
    # saliency MODEL CELLS -o OUT
    "saliency": [
        "{missing} {cells} -o {out}/s",
        "{txt} {cells} -o {out}/s",
        "{model} {missing} -o {out}/s",
        "{model} {txt} -o {out}/s",
        "{model} {dna} -o {out}/s",
        "{model} {empty} -o {out}/s",
        "{model} {nan} -o {out}/s --cells-per-class 1 --samples 2",
        "{model} {cells} -o {out}/s --cells-per-class 0",
        "{model} {cells} -o {out}/s --samples 0",
        "{model} {cells} -o {out}/s --noise -1",
        "{model} {cells} -o {out}/s --noise abc",
        "{model} {cells} -o {out}/s --cell-id nope",
        "{model} {cells} -o {out}/s --seed abc",
        "{model} {cells} -o {exists}",
        "{model} {cells} -o {txt}/s",
    ],
    # report RUN
    # view PATH (every case must fail before a server starts)
    "view": [
        "{missing} --no-browser",
        "{txt} --no-browser",
        "{emptydir} --no-browser",
        "{fake_h5ad} --no-browser",
        "{brokencells} --no-browser",
        "{cells} --port 70000 --no-browser",
        "{cells} --port abc --no-browser",
        "{emb} --cells {missing} --no-browser",
        "{emb} --cells {txt} --no-browser",
    ],
    "report": [
        "{missing}",
        "{txt}",
        "{emptydir} -o {out}/r.html",
        "{cells} -o {out}/r.html",
        "{run} -o {existsfile}",
        "{run} -o {txt}/r.html",
    ],
    # embed CELLS -o OUT (pca, so an unchecked option still finishes quickly)
    "embed": [
        "{missing} -o {out}/e.h5ad --method pca",
        "{txt} -o {out}/e.h5ad --method pca",
        "{emptydir} -o {out}/e.h5ad --method pca",
        "{empty} -o {out}/e.h5ad --method pca",
        "{nan} -o {out}/e.h5ad --method pca",
        "{cells} -o {out}/e.h5ad --method tsne",
        "{cells} -o {out}/e.h5ad --method model:{missing}",
        "{cells} -o {out}/e.h5ad --method model:{txt}",
        "{cells} -o {out}/e.h5ad --method embedder:{model}",
        "{dna} -o {out}/e.h5ad --method model:{model}",
        "{cells} -o {out}/e.h5ad --method pca --channels nope",
        "{cells} -o {out}/e.h5ad --method pca --dim 0",
        "{cells} -o {out}/e.h5ad --method pca --dim -3",
        "{cells} -o {out}/e.h5ad --method pca --dim abc",
        "{cells} -o {out}/e.h5ad --method pca --seed abc",
        "{cells} -o {out}/e.h5ad --method barlow --model resnet999 --epochs 1",
        "{cells} -o {out}/e.h5ad --method barlow --epochs 0",
        "{cells} -o {out}/e.h5ad --method barlow --epochs 1 --batch-size 0",
        "{cells} -o {out}/e.h5ad --method barlow --epochs 1 --lr 0",
        "{cells} -o {out}/e.h5ad --method barlow --epochs 1 --lambda -1",
        "{cells} -o {out}/e.h5ad --method slc --epochs 1 --copies 0",
        "{cells} -o {out}/e.h5ad --method barlow --epochs 1 --augment spin",
        "{cells} -o {out}/e.h5ad --method barlow --epochs 1 --blackout half",
        "{cells} -o {out}/e.h5ad --method barlow --epochs 1 --input-size 0",
        "{cells} -o {out}/e.h5ad --method barlow --epochs 1 --pooling max",
        "{cells} -o {out}/e.h5ad --method barlow --epochs 1 --tta yes",
        "{cells} -o {out}/e.h5ad --method autoencoder --epochs 1 --save-model {existsfile}",
        "{cells} -o {out}/e.h5ad --method autoencoder --epochs 1 --save-model {txt}/e.safetensors",
        "{cells} -o {existsfile} --method pca",
        "{cells} -o {txt}/e.h5ad --method pca",
    ],
    # cluster EMBEDDING -o OUT
    "cluster": [
        "{missing} -o {out}/k",
        "{txt} -o {out}/k",
        "{fake_h5ad} -o {out}/k",
        "{feat} -o {out}/k",
        "{featad} -o {out}/k --k 2",
        "{emb} -o {out}/k --key X_nope",
        "{emb} -o {out}/k --method dbscan",
        "{emb} -o {out}/k --on pixels",
        "{emb} -o {out}/k --k 0",
        "{emb} -o {out}/k --k 1",
        "{emb} -o {out}/k --k 1000",
        "{emb} -o {out}/k --k abc",
        "{emb} -o {out}/k --k 2 --seed abc",
        "{emb} -o {out}/k --k-range abc",
        "{emb} -o {out}/k --k-range 5,2",
        "{emb} -o {out}/k --k-range 0,3",
        "{emb} -o {out}/k --k-range 2,3,4",
        "{emb} -o {out}/k --method hdbscan --min-cluster-size 0",
        "{emb} -o {out}/k --method hdbscan --min-samples 0",
        "{emb} -o {out}/k --k 2 --by nope",
        "{emb} -o {out}/k --k 2 --probe nope",
        "{emb} -o {out}/k --k 2 --regress nope",
        "{emb} -o {out}/k --k 2 --regress label",
        "{emb} -o {out}/k --k 2 --probe label --probe-group nope",
        "{emb} -o {out}/k --k 2 --probe label --probe-group label",  # refused before UMAP runs
        "{emb} -o {out}/k --k 2 --cells {missing}",
        "{emb} -o {out}/k --k 2 --cells {one}",
        "{emb} -o {exists} --k 2",
        "{emb} -o {txt}/k --k 2",
    ],
}


def _params():
    for command, cases in CASES.items():
        for case in cases:
            marks = ()
            if isinstance(case, type(pytest.param())):
                case, marks = case.values[0], case.marks
            yield pytest.param(command, case, marks=marks, id=f"{command} {case}")


PARAMS = list(_params())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Valid inputs to put bad values beside, and files of the wrong kind, made once."""
    from stainfree.core.cellset import CellSet
    from stainfree.datasets.synthetic import make_cells, make_field
    from stainfree.io.export import write_h5ad
    from stainfree.ml.train import TrainConfig, fit
    from stainfree.pp.adata import features_to_anndata
    from stainfree.pp.features import measure
    from stainfree.utils import write_parquet

    base = tmp_path_factory.mktemp("inputs")
    p = {name: base / name for name in ("cells", "one", "nan", "dna", "empty")}
    p = {k: v.with_suffix(".cells") for k, v in p.items()}
    cs = make_cells(10, size=24, flasks_per_line=2, random_state=0)
    cs.table["dish"] = "d1"  # a group column with one value
    CellSet(cs.read(slice(None)), cs.table, channels=cs.channels, groups=["flask", "dish"]).save(p["cells"])
    make_cells(6, size=24, lines=("round",), random_state=1).save(p["one"])
    nan = cs.read(slice(None)).astype(np.float32)
    nan[:, :, 4:9, 4:9] = np.nan
    CellSet(nan, cs.table, channels=cs.channels, groups=cs.groups).save(p["nan"])
    CellSet(cs.read(slice(None)), cs.table, channels=["dna"], groups=cs.groups).save(p["dna"])
    cs.select(np.array([], dtype=int)).save(p["empty"])
    p["brokencells"] = base / "broken.cells"
    p["brokencells"].mkdir()
    (p["brokencells"] / "cellset.json").write_text("{not json")
    clf, _ = fit(cs.read(slice(None)), cs.labels, channels=cs.channels, config=TrainConfig(epochs=1, batch_size=8))
    clf.save(base / "m.safetensors")
    p["model"] = base / "m.safetensors"
    table = measure(cs, texture_scales=[3])
    write_parquet(table, base / "f.parquet")
    write_parquet(table.drop(columns=[c for c in table.columns if c.startswith("AreaShape_Area")]), base / "noarea.parquet")
    write_parquet(measure(make_cells(3, size=24, random_state=4), texture_scales=[3]), base / "other.parquet")
    write_h5ad(features_to_anndata(table), base / "f.h5ad")
    p |= {"feat": base / "f.parquet", "noarea": base / "noarea.parquet", "onefeat": base / "other.parquet", "featad": base / "f.h5ad"}
    assert run_cli("embed", p["cells"], "-o", base / "e.h5ad", "--method", "pca", "--dim", 4).returncode == 0
    p["emb"] = base / "e.h5ad"
    field = make_field((96, 96), n_cells=5, random_state=0)
    p["field"] = write_tif(base / "field.tif", field.brightfield)
    p["nanfield"] = write_tif(base / "nanfield.tif", np.full((64, 64), np.nan, np.float32))
    p["masks"] = base / "masks"
    write_tif(p["masks"] / "field.tif", field.labels.astype(np.uint16))
    p["badmasks"] = base / "badmasks"
    write_tif(p["badmasks"] / "field.tif", np.zeros((10, 10), np.uint16))
    p["src"] = base / "src"
    for label in ("round", "spindle"):
        for i in range(2):
            write_png(p["src"] / label / f"{label}-flask1-{i}.png", (cs.read([i])[0, 0]).astype(np.uint8))
    p["txt"] = base / "notes.txt"
    p["txt"].write_text("not what you think\n")
    for key, name in (("fake_h5ad", "x.h5ad"), ("fake_parquet", "x.parquet"), ("fake_st", "x.safetensors"), ("fake_tif", "x.tif")):
        p[key] = base / name
        p[key].write_text("plain text\n")
    p["badcsv"] = base / "points.csv"
    p["badcsv"].write_text("a;b\n1;2\n")
    p["emptydir"] = base / "emptydir"
    p["emptydir"].mkdir()
    p["exists"] = base / "exists"
    (p["exists"] / "mine.txt").parent.mkdir()
    (p["exists"] / "mine.txt").write_text("the user's\n")
    p["existsfile"] = base / "exists.out"
    p["existsfile"].write_text("the user's\n")
    p["run"] = base / "run"
    run = run_cli("explain", p["feat"], "--by", "label", "--from", p["cells"], "-o", p["run"], "--svm-top", 0)
    assert run.returncode == 0, run.stderr
    p["missing"] = base / "no" / "such.file"
    p["base"] = base
    return p


def _listing(*folders: Path) -> dict:
    seen = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                path = Path(root) / name
                stat = path.stat()
                seen[str(path)] = (stat.st_size if path.is_file() else None, stat.st_mtime_ns)
    return seen


def test_enough_cases_over_every_command():
    from stainfree.cli import app

    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert set(CASES) == commands
    print(f"{len(PARAMS)} bad-input cases over {len(CASES)} commands")
    assert len(PARAMS) >= 150


@pytest.mark.parametrize("command,case", PARAMS)
def test_bad_input_gives_one_line(inputs, tmp_path, command, case):
    args = shlex.split(case.format(out=tmp_path, **{k: str(v) for k, v in inputs.items()}))
    before = _listing(inputs["base"], tmp_path)
    out = run_cli(command, *args, cwd=tmp_path)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode != 0, f"accepted: {out.stdout}{out.stderr}"
    lines = out.stderr.strip().splitlines()
    if out.returncode == 2:  # typer's usage error for a malformed option: one message in a box
        assert "Usage:" in out.stderr and (
            "Invalid value" in out.stderr or "No such option" in out.stderr or "Got unexpected" in out.stderr
        )
    else:
        assert out.returncode == 1 and lines and lines[-1].startswith("error: "), out.stderr
    assert _listing(inputs["base"], tmp_path) == before


def test_verbose_shows_the_cause_for_a_bug_report(inputs):
    """``stainfree -v`` prints the error's traceback and its cause above the same one line."""
    loud = run_cli("-v", "info", inputs["brokencells"])
    quiet = run_cli("info", inputs["brokencells"])  # after the loud one, so -v is off again
    header = inputs["brokencells"] / "cellset.json"
    line = f"error: {header}: unreadable header (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
    assert quiet.returncode == 1 and quiet.stderr.strip().splitlines() == [line]
    assert loud.returncode == 1 and loud.stderr.strip().splitlines()[-1] == line
    assert "Traceback (most recent call last)" in loud.stderr and "json.decoder.JSONDecodeError" in loud.stderr
    assert "The above exception was the direct cause of the following exception" in loud.stderr
