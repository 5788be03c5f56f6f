"""What `--expressions` loses by cutting faces for `fer` from detector boxes instead of FER2013's own crops.

    python benchmarks/fer_crop.py [--limit 3589] [--upscale 4]

FER2013 val images (48x48 faces as the data set cut them) are enlarged (x4, so that MTCNN sees a 192 px face),
MTCNN finds the face, and the face is cut from the detector's box exactly as `engage predict --expressions`
cuts it (fer's face settings: margin 0, square) and with wider margins. Each cut is scored by `fer` (the face
and its mirror image), against the same images' own crops, measured in the same run. It also prints how big
the detector's box is against FER2013's crop, the margin that would make the two frames agree.
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data", "fer2013", "val")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=3589, help="images (taken evenly over the classes' files)")
    parser.add_argument("--upscale", type=int, default=4)
    parser.add_argument("--margins", default="0,0.1,0.2,0.3")
    args = parser.parse_args()
    if not os.path.isdir(SHARED):
        sys.exit(f"fer_crop: FER2013 val not found at {SHARED}")
    from dataclasses import replace

    from engage.data.readers import read_image_folder
    from engage.faces.crop import FaceSettings, cut_face
    from engage.faces.detect import biggest_face, create_detector
    from engage.io.images import read_image
    from engage.models.loading import load_model

    samples = read_image_folder(SHARED).samples
    step = max(1, len(samples) // args.limit)
    samples = samples[::step][: args.limit]
    fer = load_model("fer").set_views("flip")
    classes = fer.class_names
    settings = FaceSettings.from_dict(fer.face_settings)
    margins = [float(m) for m in args.margins.split(",")]
    detector = create_detector("mtcnn")
    own, cuts, labels, ratios, missed = [], {m: [] for m in margins}, [], [], 0
    for sample in samples:
        gray = read_image(sample.path)[:, :, 0]
        side = gray.shape[0] * args.upscale
        big = cv2.resize(gray, (side, side), interpolation=cv2.INTER_CUBIC)
        box = biggest_face(detector.detect(np.repeat(big[:, :, None], 3, axis=2)))
        if box is None:
            missed += 1
            continue
        own.append(gray)
        labels.append(classes.index(sample.label))
        ratios.append(max(box.w, box.h) / side)
        for margin in margins:
            cuts[margin].append(cut_face(big, box, replace(settings, margin=margin)))
    labels = np.array(labels)

    def accuracy(faces) -> float:
        return float((fer.predict_proba(np.stack(faces)).argmax(axis=1) == labels).mean())

    baseline = accuracy(own)
    print(
        f"{len(samples)} FER2013 val images, x{args.upscale}; MTCNN found a face in {len(labels)} "
        f"({missed} missed); the detector's box is {np.median(ratios):.2f} of FER2013's crop (median; "
        f"IQR {np.percentile(ratios, 25):.2f}-{np.percentile(ratios, 75):.2f})"
    )
    print(f"fer (face + mirror) on the same {len(labels)} faces:")
    print(f"  FER2013's own crops (baseline)          {100 * baseline:.2f}%")
    for margin in margins:
        value = accuracy(cuts[margin])
        note = "  <- how predict --expressions cuts today" if margin == settings.margin else ""
        print(
            f"  detector box, margin {margin:.1f}               {100 * value:.2f}%  "
            f"(x{value / baseline:.3f} of the baseline){note}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
