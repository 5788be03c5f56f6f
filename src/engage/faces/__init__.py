"""Step 1 of the method: find faces (detect), place their landmarks and read the attention cues (head pose, gaze,
eyes, mouth), judge whether a face can be judged (quality), and cut it as a model expects (crop)."""

from typing import TYPE_CHECKING

from engage.lazy import attach

if TYPE_CHECKING:
    from engage.faces.crop import FACE_SIZE, FaceCrop, FaceSettings, crop_face, extract_face, extract_faces
    from engage.faces.cues import CUE_COLUMNS, FaceCues, face_cues
    from engage.faces.detect import DETECTORS, FaceBox, FaceDetector, create_detector
    from engage.faces.detect_pool import DetectorPool
    from engage.faces.landmarks import FaceLandmarks, FaceMesh, shared_mesh
    from engage.faces.mtcnn_torch import MtcnnTorchDetector, create_gpu_detector
    from engage.faces.quality import FaceQuality, measure_face, quality_label

__getattr__, __dir__, __all__ = attach(__name__, __file__)
