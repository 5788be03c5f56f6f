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

__version__ = "0.1.0"

_PUBLIC = {
    "Predictor": "engage.inference.predictor",
    "to_dataframe": "engage.inference.records",
    "load_model": "engage.models.loading",
    "create_model": "engage.models.loading",
    "FaceDataset": "engage.data.dataset",
    "FaceSettings": "engage.faces.crop",
    "TrainConfig": "engage.training.loop",
    "train": "engage.training.loop",
    "cross_validate": "engage.training.crossval",
    "evaluate": "engage.evaluation.evaluate",
    "calibrate": "engage.evaluation.site",
    "SiteCalibration": "engage.evaluation.calibration",
    "Decision": "engage.evaluation.decision",
}
_FUNCTIONS = {"evaluate": "evaluate_model", "calibrate": "calibrate_site"}  # public name -> the module's name
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'engage' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_PUBLIC[name])
    value = getattr(module, _FUNCTIONS.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
