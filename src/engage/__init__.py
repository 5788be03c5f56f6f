"""engage: student engagement recognition from facial expression, for research (see the README).

The public API, in a few names (each imported when first used, so `import engage` stays light):

    import engage

    predictor = engage.Predictor.from_pretrained("engagement")    # or any model file
    faces = predictor.predict("photo.jpg")                         # one FaceResult per face, biggest first
    table = engage.to_dataframe(faces)                             # the per-face table, as `predict --csv`
    video = engage.to_dataframe(predictor.predict_video("lecture.mp4"))

    model = engage.load_model("engagement")         # any trained model: predict_proba(faces), decision
    network = engage.create_model("compact", num_classes=2, width=48)   # a network by name (timm-style)
    data = engage.FaceDataset.load("wacv.npz")
    result = engage.train(engage.TrainConfig.from_recipe("default"), data, None, "runs/x")
    report = engage.evaluate("engagement", "wacv.npz", base_rate=0.9)   # p read at a site 90% on task
    site = engage.calibrate("engagement", "site/labels.csv", "site.json")   # a new site's correction (JSON)
"""

from typing import TYPE_CHECKING

from engage.lazy import attach
from engage.version import __version__

if TYPE_CHECKING:  # the public API (engage.lazy: each name imported when first used)
    from engage.data.dataset import FaceDataset
    from engage.evaluation.evaluate import evaluate_model as evaluate
    from engage.evaluation.site import calibrate_site as calibrate
    from engage.faces.crop import FaceSettings
    from engage.inference.predictor import Predictor
    from engage.inference.records import to_dataframe
    from engage.models.calibration import SiteCalibration
    from engage.models.decision import Decision
    from engage.models.loading import create_model, load_model
    from engage.training.crossval import cross_validate
    from engage.training.loop import TrainConfig, train

__getattr__, __dir__, __all__ = attach(__name__, __file__)
__all__ += ["__version__"]
