"""Small networks of users' own, trained in seconds on images the tests draw: the whole pipeline on a
model file, with a filter whose class is known by construction.

The image set: 32 px pictures of a coloured square (red, green or blue: the class) on grey noise, in
one subfolder per class. The network: its first layer joins a hand-set, frozen ``red_detector`` (one
filter: red minus the other colours) to seven trained filters (a Concatenate), then a convolution with
BatchNorm and ReLU, a separable convolution, global pooling and a softmax over the three classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("blue", "green", "red")  # sorted: the order Keras gives the subfolders
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 220)}
SIDE = 32


def draw_images(folder: Path, per_class: int = 16, seed: int = 0) -> Path:
    """``folder/<class>/NNN.png``: a square of the class's colour somewhere on grey noise."""
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(90, 160, size=(SIDE, SIDE, 1)).repeat(3, axis=2).astype(np.uint8)
            side = int(rng.integers(8, 14))
            y, x = (int(v) for v in rng.integers(0, SIDE - side, size=2))
            image[y:y + side, x:x + side] = COLOURS[name]
            Image.fromarray(image).save(folder / name / f"{i:03d}.png")
    return folder


def load_set(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for c, name in enumerate(CLASSES):
        for path in sorted((folder / name).glob("*.png")):
            images.append(np.asarray(Image.open(path).convert("RGB"), np.float32))
            labels.append(c)
    return np.stack(images), np.asarray(labels)


def red_detector_kernel() -> tuple[np.ndarray, np.ndarray]:
    """3x3 kernel on [0, 1] RGB: red minus green and blue, at every position; fires on red only."""
    kernel = np.zeros((3, 3, 3, 1), np.float32)
    kernel[:, :, 0, 0] = 1.0 / 9
    kernel[:, :, 1, 0] = -1.0 / 9
    kernel[:, :, 2, 0] = -1.0 / 9
    return kernel, np.asarray([-0.2], np.float32)


def colour_network(grayscale: bool = False, rescaling: bool = True, seed: int = 0):
    """The functional network described above (grayscale: one input channel, no detector), its
    weights drawn from ``seed``: the same network whatever ran before in the process."""
    import keras

    keras.utils.set_random_seed(seed)
    channels = 1 if grayscale else 3
    image = keras.Input((SIDE, SIDE, channels), name="image")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(image) if rescaling else image
    trained = keras.layers.Conv2D(7, 3, padding="same", activation="relu", name="conv1")(x)
    if grayscale:
        x = trained
    else:
        detector = keras.layers.Conv2D(1, 3, padding="same", activation="relu", name="red_detector", trainable=False)
        x = keras.layers.Concatenate(name="joined")([detector(x), trained])
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(12, 3, padding="same", use_bias=False, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="conv2_bn")(x)
    x = keras.layers.ReLU(name="conv2_relu")(x)
    x = keras.layers.SeparableConv2D(12, 3, padding="same", activation="relu", name="sep3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.Dense(len(CLASSES), activation="softmax", name="classes")(x)
    model = keras.Model(image, out, name="colours")
    if not grayscale:
        model.get_layer("red_detector").set_weights(list(red_detector_kernel()))
    return model


def train(model, folder: Path, epochs: int = 12, seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    images, labels = load_set(folder)
    if model.inputs[0].shape[-1] == 1:
        images = images @ np.asarray([0.299, 0.587, 0.114], np.float32)[:, None]
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, epochs=epochs, batch_size=16, verbose=0)
    return model
