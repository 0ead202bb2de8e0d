"""Networks and their training: the model registry, transforms, the classifier, embedders.

- :mod:`.models`: classification networks by name, each with its input size;
- :mod:`.transforms`: normalisation and augmentation of cells;
- :mod:`.train`: the training configuration and loop;
- :mod:`.classifier`: a trained classifier, its file, and prediction;
- :mod:`.embed` and :mod:`.losses`: embeddings learnt without labels;
- :mod:`.saliency`: which pixels a classifier looks at.
"""
