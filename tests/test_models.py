import pytest
import torch

from engage.errors import UsageError
from engage.models.networks import (
    build_model,
    count_parameters,
    faces_to_tensor,
    transfer_backbone,
)


@pytest.mark.parametrize(
    "name,params,features",
    [
        ("cnn", 16_993_031, 1024),
        ("vgg", 44_546_503, 1024),
        ("compact", 1_174_439, 256),
    ],
)
def test_shapes_and_parameter_counts(name, params, features):
    model = build_model(name, num_classes=7).eval()
    assert count_parameters(model) == params
    x = torch.rand(3, 1, 48, 48)
    assert model.forward_features(x).shape == (3, features)
    assert model(x).shape == (3, 7)


def test_the_paper_vgg_is_178_mb_and_the_compact_one_ships():
    assert count_parameters(build_model("vgg", 7)) * 4 / 1e6 == pytest.approx(178.2, abs=0.1)
    assert count_parameters(build_model("compact", 7)) * 2 / 1e6 < 25  # fp16 file size in MB
    assert count_parameters(build_model("compact", 7, width=64)) * 2 / 1e6 < 25


def test_registry_refuses_unknown_names():
    with pytest.raises(UsageError, match="unknown model 'resnet'"):
        build_model("resnet", 7)
    with pytest.raises(UsageError, match="at least 2 classes"):
        build_model("vgg", 1)


@pytest.mark.parametrize("name", ["compact", "cnn"])
def test_backbone_transfer_copies_weights_and_leaves_a_fresh_head(name):
    torch.manual_seed(0)
    fer = build_model(name, 7)
    with torch.no_grad():
        fer.input_mean.fill_(0.5)
    torch.manual_seed(1)
    er = build_model(name, 2)
    head_before = er.head.weight.clone()
    taken, left = transfer_backbone(er, fer.state_dict())
    assert left == ["head.bias", "head.weight"]
    assert len(taken) == len(fer.state_dict()) - 2
    for key in taken:
        assert torch.equal(er.state_dict()[key], fer.state_dict()[key]), key
    assert torch.equal(er.head.weight, head_before) and er.head.weight.shape == (2, fer.head.in_features)
    assert float(er.input_mean) == 0.5  # the standardisation travels with the backbone


def test_faces_to_tensor_normalisations():
    import numpy as np

    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48)).astype(np.uint8)
    standard = faces_to_tensor(faces)
    assert standard.shape == (4, 1, 48, 48) and float(standard.max()) <= 1.0
    paper = faces_to_tensor(faces, "paper")
    assert torch.allclose(paper.flatten(1).norm(dim=1), torch.full((4,), 100.0), atol=1e-2)


def test_test_time_flip_averages_the_mirror_image_and_travels_with_the_file(tmp_path):
    from engage.models.checkpoint import load_network, model_config, save_model

    torch.manual_seed(0)
    model = build_model("compact", 3, width=8).eval()
    x = torch.rand(4, 1, 48, 48)
    plain, mirrored = model(x), model(x.flip(-1))
    assert not torch.allclose(plain, mirrored)
    model.test_time_flip = True
    assert torch.allclose(model(x), (plain + mirrored) / 2, atol=1e-6)
    assert torch.allclose(model(x), model(x.flip(-1)), atol=1e-5)  # mirror-invariant by construction
    config = model_config("compact", 3, ["a", "b", "c"], {"width": 8}, test_time_flip=True)
    save_model(str(tmp_path / "m.safetensors"), model, config)
    loaded, _ = load_network(str(tmp_path / "m.safetensors"))
    assert loaded.test_time_flip and torch.allclose(loaded(x), model(x), atol=1e-6)


def test_float16_and_int8_storage_keep_the_predictions_and_shrink_the_file(tmp_path):
    from safetensors.torch import load_file, save_file

    from engage.errors import EngageError
    from engage.models.checkpoint import load_network, model_config, save_model

    torch.manual_seed(0)
    model = build_model("compact", 3, width=16).eval()
    x = torch.rand(64, 1, 48, 48)
    reference = torch.softmax(model(x), dim=1)
    config = model_config("compact", 3, ["a", "b", "c"], {"width": 16})
    sizes = {}
    for storage in ("float32", "float16", "int8"):
        path = tmp_path / f"{storage}.safetensors"
        save_model(str(path), model, config, storage=storage)
        sizes[storage] = path.stat().st_size
        loaded, loaded_config = load_network(str(path))
        assert loaded_config["dtype"] == storage
        assert all(p.dtype == torch.float32 for p in loaded.parameters())  # always computed in float32
        probabilities = torch.softmax(loaded(x), dim=1)
        assert (probabilities - reference).abs().max() < (1e-6 if storage == "float32" else 0.02), storage
        assert (probabilities.argmax(1) == reference.argmax(1)).float().mean() >= 0.95
    assert sizes["float16"] < 0.55 * sizes["float32"] and sizes["int8"] < 0.55 * sizes["float16"]
    with pytest.raises(ValueError, match="storage must be one of"):
        save_model(str(tmp_path / "x.safetensors"), model, config, storage="int4")
    # an int8 weight that lost its scale is refused, not read as whole numbers
    tensors = load_file(str(tmp_path / "int8.safetensors"))
    scale_key = next(k for k in tensors if k.endswith(".int8_scale"))
    del tensors[scale_key]
    save_file(
        tensors,
        str(tmp_path / "broken.safetensors"),
        metadata={
            "engage": '{"model": "compact", "num_classes": 3, '
            '"class_names": ["a", "b", "c"], "model_args": {"width": 16}, "kind": "model"}'
        },
    )
    with pytest.raises(EngageError, match="int8 weights without a fitting scale"):
        load_network(str(tmp_path / "broken.safetensors"))


def test_a_view_moves_and_zooms_the_face_and_keeps_its_size():
    from engage.models.views import view

    face = torch.zeros(1, 1, 48, 48)
    face[0, 0, 20, 30] = 1.0
    moved = view(face, 2, -3, 1.0)  # 2 px right, 3 px up
    assert moved.shape == face.shape and moved[0, 0, 17, 32] == 1.0 and float(moved.sum()) == 1.0
    assert torch.equal(view(face, 0, 0, 1.0), face)
    ramp = torch.linspace(0, 1, 48).repeat(48, 1)[None, None]  # brightness grows to the right
    for zoom in (0.9, 1.1):
        zoomed = view(ramp, 0, 0, zoom)
        assert zoomed.shape == ramp.shape
        row = zoomed[0, 0, 24]
        if zoom > 1:  # zooming in crops the ramp's ends
            assert row[0] > 0.02 and row[-1] < 0.98
        else:  # zooming out squeezes it and repeats its edge pixels outward
            assert row[0] < 0.01 and row[-1] > 0.99 and row[0] == row[1] and row[-1] == row[-2]
    assert not torch.allclose(view(ramp, 0, 0, 1.1), ramp) and not torch.allclose(view(ramp, 0, 0, 0.9), ramp)


def test_test_time_views_average_every_view_and_its_mirror_and_travel_with_the_file(tmp_path):
    from engage.errors import EngageError
    from engage.models.checkpoint import load_network, model_config, save_model
    from engage.models.views import SHIFT_ZOOM, view

    torch.manual_seed(0)
    model = build_model("compact", 3, width=8).eval()
    x = torch.rand(5, 1, 48, 48)
    expected = sum(model(view(x, *v)) + model(view(x, *v).flip(-1)) for v in SHIFT_ZOOM) / (2 * len(SHIFT_ZOOM))
    model.test_time_flip, model.test_time_views = True, SHIFT_ZOOM
    assert torch.allclose(model(x), expected, atol=1e-5)
    config = model_config(
        "compact", 3, ["a", "b", "c"], {"width": 8}, test_time_flip=True, test_time_views=[list(v) for v in SHIFT_ZOOM]
    )
    save_model(str(tmp_path / "m.safetensors"), model, config)
    loaded, _ = load_network(str(tmp_path / "m.safetensors"))
    assert loaded.test_time_views == SHIFT_ZOOM and torch.allclose(loaded(x), expected, atol=1e-5)
    for bad in ([[0, 0]], [[20, 0, 1.0]], [[0, 0, 3.0]], [[0.5, 0, 1.0]], "abc"):
        save_model(str(tmp_path / "bad.safetensors"), model, dict(config, test_time_views=bad))
        with pytest.raises(EngageError, match=r"test_time_views: each view must be \[dx, dy, zoom\]"):
            load_network(str(tmp_path / "bad.safetensors"))
    model.train()  # training sees one view (same dropout draw, same batch statistics)
    one = [torch.manual_seed(1) and model.forward_head(model.forward_features(x)), torch.manual_seed(1) and model(x)]
    assert torch.allclose(*one)
