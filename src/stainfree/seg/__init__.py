"""Segmentation of fields of view, and the cells cut out of them.

Learnt instance segmentation of unstained cells:

- :mod:`.networks`: segmentation networks by name (a small U-Net by default);
- :mod:`.targets`: the per-pixel maps a network learns from instance labels;
- :mod:`.instances`: network outputs to instance labels (seeded watershed, size filter);
- :mod:`.model`: :class:`~stainfree.seg.model.Segmenter`, a trained network with everything
  needed to reuse it (scale, channels, normalisation, provenance), tiled prediction;
- :mod:`.resize`: fields at the network's scale and back, tiling and memory checks;
- :mod:`.annotations`: label images, ImageJ ROI sets, COCO JSON and binary masks;
- :mod:`.training`: training and fine-tuning from annotated fields;
- :mod:`.batches`: augmented training crops and the loss;
- :mod:`.scoring`: instance F1, average precision, splits and merges against a ground truth.

Beside it:

- :mod:`.classical`: the threshold-and-watershed pipeline (the default on fluorescence);
- :mod:`.methods`: which method segments a field (``auto``, ``learnt``, ``classical``, ``cellpose``);
- :mod:`.crops`: single-cell crops around objects or given points;
- :mod:`.fluorescence`: labels from a fluorescence channel (two-population fit);
- :mod:`.density`: how crowded each cell's neighbourhood is;
- :mod:`.pipeline`: fields to cells (segment, crop, tabulate).
"""
