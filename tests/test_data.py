import pytest
from conftest import write_image

from engage.data.readers import (
    FER_EMOTIONS,
    apply_label_map,
    apply_subject_pattern,
    class_names_of,
    parse_label_map,
    read_fer2013_csv,
    read_image_folder,
    read_manifest,
    read_samples,
)
from engage.errors import EngageError, UsageError


def make_tree(root, astronaut, layout):
    for relative in layout:
        write_image(root / relative, astronaut[::8, ::8])
    return root


def test_image_folder_tree_one_class_per_folder(tmp_path, astronaut):
    make_tree(tmp_path, astronaut, ["happy/a.png", "happy/b.jpg", "sad/deeper/c.png", "sad/d.bmp"])
    (tmp_path / "sad" / "notes.txt").write_text("not an image")
    (tmp_path / "README.md").write_text("loose file")
    source = read_image_folder(str(tmp_path))
    assert [s.label for s in source.samples] == ["happy", "happy", "sad", "sad"]
    assert source.samples[3].path.endswith("sad/deeper/c.png")
    assert len(source.ignored) == 2
    assert class_names_of(source.samples) == ["happy", "sad"]


def test_flat_folder_is_unlabelled_and_empty_folder_fails(tmp_path, astronaut):
    make_tree(tmp_path / "flat", astronaut, ["x.png", "y.png"])
    assert [s.label for s in read_image_folder(str(tmp_path / "flat")).samples] == [None, None]
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngageError, match="holds no images"):
        read_image_folder(str(tmp_path / "empty"))


def test_manifest_paths_are_relative_to_the_csv(tmp_path, astronaut):
    make_tree(tmp_path / "data", astronaut, ["imgs/a.png", "imgs/b.png"])
    manifest = tmp_path / "data" / "labels.csv"
    manifest.write_text("path,subject,label,engagement\nimgs/a.png,s1,2_engaged,3\nimgs/b.png,s2,0_disengaged,0\n")
    source = read_manifest(str(manifest))
    assert [s.label for s in source.samples] == ["2_engaged", "0_disengaged"]
    assert [s.subject for s in source.samples] == ["s1", "s2"]
    assert source.samples[0].path == str(tmp_path / "data" / "imgs" / "a.png")
    assert [s.label for s in read_manifest(str(manifest), label_column="engagement").samples] == ["3", "0"]


def test_manifest_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\na.png,x\n")
    with pytest.raises(EngageError, match=r"missing column.*path.*it has file, class"):
        read_samples(str(bad))
    empty_label = tmp_path / "empty_label.csv"
    empty_label.write_text("path,label\na.png,\n")
    with pytest.raises(EngageError, match="row 2"):
        read_samples(str(empty_label))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(EngageError, match="empty CSV"):
        read_samples(str(tmp_path / "empty.csv"))
    with pytest.raises(EngageError, match="no such file"):
        read_samples(str(tmp_path / "nope.csv"))


def fer_row(emotion, usage, value=100, count=2304):
    return f"{emotion},{' '.join([str(value)] * count)},{usage}\n"


def test_fer2013_csv_labels_and_usage(tmp_path):
    csv_path = tmp_path / "fer2013.csv"
    csv_path.write_text(
        "emotion,pixels,Usage\n" + fer_row(0, "Training") + fer_row(6, "PublicTest", 30) + fer_row(3, "PrivateTest")
    )
    source = read_samples(str(csv_path))
    assert source.kind == "fer2013-csv"
    assert [s.label for s in source.samples] == ["angry", "neutral", "happy"]
    assert FER_EMOTIONS[6] == "neutral"
    assert source.samples[1].pixels.shape == (48, 48) and source.samples[1].pixels.max() == 30
    assert [s.split for s in source.samples] == ["Training", "PublicTest", "PrivateTest"]
    only_public = read_fer2013_csv(str(csv_path), ["PublicTest"])
    assert [s.label for s in only_public.samples] == ["neutral"]


def test_fer2013_csv_bad_pixel_count(tmp_path):
    csv_path = tmp_path / "fer2013.csv"
    csv_path.write_text("emotion,pixels,Usage\n" + fer_row(0, "Training") + fer_row(1, "Training", count=2000))
    with pytest.raises(EngageError, match="row 3 has 2000 pixel values; expected 2304"):
        read_samples(str(csv_path))
    csv_path.write_text("emotion,pixels,Usage\n" + fer_row(9, "Training"))
    with pytest.raises(EngageError, match="expected 0-6"):
        read_samples(str(csv_path))


def test_label_map_binary_task():
    mapping = parse_label_map("2_engaged=engaged,0_disengaged=disengaged,1_partial=disengaged")
    assert mapping == {"2_engaged": "engaged", "0_disengaged": "disengaged", "1_partial": "disengaged"}
    from engage.data.readers import Sample

    samples = [Sample("a", label="2_engaged"), Sample("b", label="1_partial"), Sample("c", label="0_disengaged")]
    apply_label_map(samples, mapping)
    assert [s.label for s in samples] == ["engaged", "disengaged", "disengaged"]
    assert class_names_of(samples) == ["disengaged", "engaged"]
    with pytest.raises(UsageError, match="label\\(s\\) 3_bored"):
        apply_label_map([Sample("d", label="3_bored")], mapping)
    with pytest.raises(UsageError, match="OLD=NEW"):
        parse_label_map("engaged")


def test_numeric_labels_sort_as_numbers():
    from engage.data.readers import Sample

    assert class_names_of([Sample("a", label=v) for v in ["10", "2", "0"]]) == ["0", "2", "10"]


def test_subject_pattern(tmp_path, astronaut):
    make_tree(tmp_path, astronaut, ["engaged/img10_3.jpg", "engaged/img7_12.jpg", "bored/img10_44.jpg"])
    source = read_image_folder(str(tmp_path))
    apply_subject_pattern(source.samples, r"img(\d+)_", source.root)
    assert sorted(s.subject for s in source.samples) == ["10", "10", "7"]
    with pytest.raises(UsageError, match="matches no subject in 3 file name"):
        apply_subject_pattern(source.samples, r"subject-(\d+)", source.root)
    with pytest.raises(UsageError, match="bad --subject-pattern"):
        apply_subject_pattern(source.samples, r"img(\d+", source.root)
