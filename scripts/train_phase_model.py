"""Train the phase-contrast segmentation model shipped with stainfree.

Data: ../shared/data/phase-fields (Tsai et al. 2019, Usiigaci, SoftwareX 9:230; the public
repository oist/Usiigaci, MIT licence), sets 1-40. Sets 41-45 stay out of training so the shipped
model can be checked on fields it never saw (tests/test_seg_learnt.py, benchmarks/segmentation_learnt.py).
The fields are Nikon 10x Ph1 at about 0.87 um per pixel.

    .venv/bin/python scripts/train_phase_model.py [--steps N] [--out src/stainfree/seg/weights/phase_contrast.safetensors]

It runs the same code as ``stainfree train-segmenter`` (one process, progress on stderr) and
prints the training time and the validation scores as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "phase-fields"
OUT = ROOT / "src" / "stainfree" / "seg" / "weights" / "phase_contrast.safetensors"
LICENCE = "MIT (training data: oist/Usiigaci, Tsai et al. 2019, SoftwareX 9:230)"
SOURCE = "../shared/data/phase-fields sets 1-40 (Usiigaci 'Mask R-CNN/train/set*'), Nikon 10x Ph1, about 0.87 um/px"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--steps", type=int, help="training steps (default: SegTrainConfig's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from OUT.checkpoint")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    from stainfree.seg.training import SegTrainConfig
    from stainfree.workflows.segmentation import run_train_segmenter

    fields = [args.data / "fields" / f"set{k}.tif" for k in range(1, 41)]
    config = SegTrainConfig(seed=args.seed, device=args.device, **({"steps": args.steps} if args.steps else {}))
    start = time.monotonic()
    path, model = run_train_segmenter(
        fields,
        args.data / "masks",
        args.out,
        config=config,
        validation_fraction=0.1,
        pixel_size=0.87,
        resume=args.resume,
        force=True,
        licence=LICENCE,
        source=SOURCE,
        channels=["phase"],
    )
    history = model.provenance["history"]
    print(
        json.dumps(
            {
                "model": str(path),
                "seconds": round(time.monotonic() - start, 1),
                "steps": config.steps,
                "scale": model.scale,
                "diameter": model.diameter,
                "last_validation": history[-1],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
