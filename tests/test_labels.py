"""Each image's class: folders, CSV, caffe's val.txt, Kaggle's LOC_val_solution.csv, the class order, the
shipped ImageNet classes, and the refusals."""

from __future__ import annotations

import json

import pytest

from generator.errors import AtlasError
from generator.evidence.imagesets import ImageSet
from generator.evidence.labels import (
    IMAGENET_FILE,
    check_labels_arg,
    imagenet_classes,
    read_labels,
)
from generator.network.zoo import ModelSpec


def _spec(classes: int | None) -> ModelSpec:
    head = {"layer": "out", "unfuse": True, "activation": "softmax", "classes": classes, "binary": False} if classes else None
    return ModelSpec("m", "m", "", "none", "", "", "Stage {n}", False, "", source={"file": "m.keras"}, head=head)


def _images(tmp_path, files) -> ImageSet:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    return ImageSet(tmp_path, tuple(sorted(files)))


def test_imagenet_classes_are_keras_order():
    classes = imagenet_classes()
    assert len(classes) == 1000 and len({c.synset for c in classes}) == 1000
    assert [c.synset for c in classes] == sorted(c.synset for c in classes)  # Keras's order: sorted synsets
    assert (classes[0].synset, classes[0].name) == ("n01440764", "tench")
    assert (classes[1].synset, classes[1].name) == ("n01443537", "goldfish")
    assert (classes[-1].synset, classes[-1].name) == ("n15075141", "toilet tissue")
    data = json.loads(IMAGENET_FILE.read_text())
    assert "timm" in data["source"] and "Apache-2.0" in data["license"]


def test_folders_keep_keras_order_and_empty_folders(tmp_path):
    images = _images(tmp_path, ["dog/1.png", "cat/2.png", "cat/3.png", "loose.png"])
    (tmp_path / "emu").mkdir()  # a class folder with no image still counts, as in image_dataset_from_directory
    labels = read_labels("folders", images, _spec(3))
    assert labels.classes == ("cat", "dog", "emu")
    assert labels.index == (0, 0, 1, -1) and labels.unlabelled == 1  # sorted files: cat/2, cat/3, dog/1, loose
    assert list(labels.counts()) == [2, 1, 0]
    with pytest.raises(AtlasError, match="3 classes \\(cat, dog, emu\\), but the network's classifier has 2 outputs"):
        read_labels("folders", images, _spec(2))


def test_file_formats(tmp_path):
    images = _images(tmp_path / "im", ["a/ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG", "x.png"])
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\na/ILSVRC2012_val_00000001.JPEG,n01443537\nILSVRC2012_val_00000002.JPEG,n01440764\n")
    labels = read_labels(str(csv), images, _spec(1000))  # sorted files: ...00000002.JPEG, a/...00000001.JPEG, x.png
    assert len(labels.classes) == 1000 and labels.index == (0, 1, -1) and labels.unlabelled == 1
    assert labels.display[0] == "n01440764 tench"
    kaggle = tmp_path / "LOC_val_solution.csv"
    kaggle.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01443537 1 2 3 4 n01443537 5 6 7 8\n"
                      "ILSVRC2012_val_00000002,n01440764 1 2 3 4\n")
    assert read_labels(str(kaggle), images, _spec(1000)).index == (0, 1, -1)
    caffe = tmp_path / "val.txt"
    caffe.write_text("ILSVRC2012_val_00000001.JPEG 1\nILSVRC2012_val_00000002.JPEG 0\n")
    assert read_labels(str(caffe), images, _spec(1000), "imagenet").index == (0, 1, -1)
    names = tmp_path / "classes.txt"
    names.write_text("zebra\napple\n")
    csv.write_text("x.png,apple\nILSVRC2012_val_00000002,zebra\n")
    labels = read_labels(str(csv), images, _spec(2), str(names))
    assert labels.classes == ("zebra", "apple") and labels.index == (0, -1, 1)
    without_head = read_labels(str(csv), images, _spec(None))
    assert without_head.classes == ("apple", "zebra")


def test_refusals(tmp_path):
    images = _images(tmp_path / "im", ["a.png"])
    devkit = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    devkit.write_text("490\n361\n171\n")
    with pytest.raises(AtlasError, match="bare class numbers in the devkit's own numbering; keep the devkit's meta.mat"):
        read_labels(str(devkit), images, _spec(1000))
    (tmp_path / "map_clsloc.txt").write_text("n02119789 1 kit_fox\n")
    with pytest.raises(AtlasError, match="line 1 holds '490', not a class number of the devkit"):
        read_labels(str(devkit), images, _spec(1000))
    other = tmp_path / "other.csv"
    other.write_text("b.png,cat\n")
    with pytest.raises(AtlasError, match="names none of the 1 images"):
        read_labels(str(other), images, _spec(None))
    with pytest.raises(AtlasError, match="--classes names the classes of --labels"):
        check_labels_arg(None, "imagenet")
    with pytest.raises(AtlasError, match="--labels nope.csv: no such file"):
        check_labels_arg("nope.csv", None)


@pytest.mark.parametrize("mapping", ["meta.mat", "map_clsloc.txt"])
def test_the_devkit_ground_truth_reads_with_its_mapping(tmp_path, mapping):
    """The devkit numbers classes its own way (1: kit fox, n02119789); its meta.mat or map_clsloc.txt
    beside the ground truth turns them into synsets, and those into Keras's order."""
    import numpy as np

    devkit = tmp_path / "devkit" / "data"
    devkit.mkdir(parents=True)
    table = [(1, "n02119789", "kit fox"), (2, "n02100735", "English setter"), (3, "n01440764", "tench"),
             (1001, "n00001740", "entity")]  # meta.mat also lists the higher synsets, numbered above 1000
    if mapping == "meta.mat":
        from scipy.io import savemat

        rows = np.array([(n, w, words) for n, w, words in table],
                        dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O")])
        savemat(devkit / "meta.mat", {"synsets": rows.reshape(-1, 1)})
    else:
        (devkit / "map_clsloc.txt").write_text("".join(f"{w} {n} {words.replace(' ', '_')}\n" for n, w, words in table[:3]))
    truth = devkit / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text("3\n1\n2\n1\n")
    images = _images(tmp_path / "val", [f"ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 4)] + ["other.png"])
    labels = read_labels(str(truth), images, _spec(1000))
    synsets = [labels.classes[i] if i >= 0 else None for i in labels.index]
    assert synsets == ["n01440764", "n02119789", "n02119789", None] and labels.unlabelled == 1
    assert labels.classes.index("n01440764") == 0  # tench: Keras's first output


def _pngs(root, files):
    import numpy as np
    from PIL import Image

    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / name)
    return ImageSet(root, tuple(sorted(files)))


@pytest.mark.parametrize("folders", [["1", "2", "3"], [str(i) for i in range(11)]])
def test_numbered_folders_are_numbered_as_keras_numbers_them(tmp_path, folders):
    """Folders 1, 2, 3 are outputs 0, 1, 2 (not output indices); folder 10 is output 2 of 0..10, as
    keras.utils.image_dataset_from_directory numbers them (sorted as text)."""
    import keras

    files = [f"{name}/{i}.png" for name in folders for i in range(2)]
    images = _pngs(tmp_path, files)
    labels = read_labels("folders", images, _spec(len(folders)))
    data = keras.utils.image_dataset_from_directory(tmp_path, image_size=(4, 4), shuffle=False, batch_size=None)
    assert list(labels.classes) == data.class_names
    theirs = {path.removeprefix(str(tmp_path) + "/"): int(label) for path, (_, label) in zip(data.file_paths, data)}
    ours = {file: index for file, index in zip(images.files, labels.index)}
    assert ours == theirs
    if len(folders) == 11:
        assert labels.classes[2] == "10" and "text" in labels.order
    assert labels.unlabelled == labels.other == 0
    wrong = len(folders) + 1
    with pytest.raises(AtlasError, match=f"--labels folders: {len(folders)} classes .* but the network's classifier "
                                         f"has {wrong} outputs"):
        read_labels("folders", images, _spec(wrong))


def test_colliding_rows_are_refused_naming_them(tmp_path):
    images = _images(tmp_path / "im", ["cat/0.png", "dog/0.png", "dog/1.png"])
    clash = tmp_path / "labels.csv"
    clash.write_text("path,label\n/data/pets/cat/0.png,cat\n/data/pets/dog/0.png,dog\n/data/pets/dog/1.png,dog\n")
    labels = read_labels(str(clash), images, _spec(2))  # matched by the whole path under the folder
    assert labels.classes == ("cat", "dog") and labels.index == (0, 1, 1)
    clash.write_text("path,label\ncat/0.png,cat\n0.png,dog\n1.png,dog\n")
    assert read_labels(str(clash), images, _spec(2)).index == (0, 1, 1)  # cat/0.png by path, dog/0.png by name
    clash.write_text("path,label\nx/cat/0.png,cat\ny/dog/0.png,dog\n1.png,dog\n")
    with pytest.raises(AtlasError, match=r"rows 2 \(x/cat/0.png, cat\) and 3 \(y/dog/0.png, dog\) both match the "
                                         r"image 0.png by '0.png'"):
        read_labels(str(clash), _images(tmp_path / "flat", ["0.png", "1.png"]), _spec(2))
    clash.write_text("cat/0.png,cat\ncat/0.png,dog\n")
    with pytest.raises(AtlasError, match=r"rows 1 \(cat/0.png, cat\) and 2 \(cat/0.png, dog\) both match"):
        read_labels(str(clash), images, _spec(2))
    clash.write_text("cat/0.png,cat\ncat/0.png,cat\ndog/0.png,dog\n")  # a row given twice alike is harmless
    assert read_labels(str(clash), images, _spec(2)).index == (0, 1, -1)


def test_integer_labels_beyond_the_outputs_are_refused(tmp_path):
    images = _images(tmp_path / "im", ["a.png", "b.png"])
    file = tmp_path / "labels.csv"
    file.write_text("a.png,0\nb.png,3\n")
    with pytest.raises(AtlasError, match=r"the label 3 is not an output of the network's classifier \(0 to 2\)"):
        read_labels(str(file), images, _spec(3))
    file.write_text("a.png,0\nb.png,2\n")
    assert read_labels(str(file), images, _spec(3)).index == (0, 2)
