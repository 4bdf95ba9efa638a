"""The networks the atlas knows: which Keras application builds each, how it wants its input, where
its ImageNet weights live, and how its layers group into blocks or stages.

Adding a ``keras.applications`` convnet is one entry here plus its layer table
(``make layer-tables`` writes it from the Keras graph); nothing else names a model. A user's own
network (``--model PATH.keras``) is read by ``generator.network.modelfile`` and registered here under its
``--name`` for the rest of the run (``register_model``), so every command and page finds it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.errors import AtlasError

KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class ModelSpec:
    """One network of the atlas."""

    name: str  # the --model value and the URL segment: vgg16
    title: str  # how people write it: VGG16
    constructor: str  # keras.applications attribute: VGG16
    preprocessing: object  # keras.applications' preprocess_input mode (caffe, tf, torch), or an inputs.Preprocessing
    imagenet_file: str  # Keras's cached file name of the no-top ImageNet weights
    imagenet_md5: str
    group_title: str  # "Block {n}" / "Stage {n}": how a group of layers is called
    conv_only: bool  # weights are the conv kernels alone (VGG): files are read by kernel order
    about: str  # one sentence for the model page

    imagenet_folder: str = ""  # its folder under Keras's storage (default: the model name)
    # a user's own network (generator.network.modelfile): the file it came from (name and sha256, never its
    # path), the image side its input is fixed to (None: any), its classification head, if any
    source: dict | None = None
    input_size: int | None = None
    head: dict | None = None
    # a user's network carries its layer table (layers.Layer rows, discovered from its file or read from
    # its atlas); the zoo's tables ship as JSON beside generator.network.layers
    layers: tuple = ()

    @property
    def zoo(self) -> bool:
        """A ``keras.applications`` network of this module (not a user's file)."""
        return self.source is None

    @property
    def channels(self) -> int:
        return getattr(self.preprocessing, "channels", 3)

    @property
    def imagenet_url(self) -> str:
        return f"{KERAS_APPLICATIONS}{self.imagenet_folder or self.name}/{self.imagenet_file}"

    def group_of(self, layer_name: str) -> str:
        """The block or stage a layer belongs to: the part of its Keras name before the first ``_``
        (``block3_conv3`` -> ``block3``, ``conv4_block3_out`` -> ``conv4``)."""
        return layer_name.split("_", 1)[0]

    def group_label(self, group: str) -> str:
        digits = "".join(ch for ch in group if ch.isdigit())
        return self.group_title.format(n=digits or group, group=group)

    def short_name(self, layer: str, filter_index: int) -> str:
        """How a paper names a filter: ``VGG16 block3_conv3:80``."""
        return f"{self.title} {layer}:{int(filter_index)}"


_VGG = dict(preprocessing="caffe", group_title="Block {n}", conv_only=True)
_RESNET = dict(preprocessing="caffe", group_title="Stage {n}", conv_only=False)

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("vgg16", "VGG16", "VGG16", imagenet_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                  imagenet_md5="6d6bbae143d832006294945121d1f1fc",
                  about="VGG16 (Simonyan and Zisserman, ICLR 2015) has 5 blocks of 3×3 convolutions, each "
                        "closed by a 2×2 max-pool.", **_VGG),
        ModelSpec("vgg19", "VGG19", "VGG19", imagenet_file="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                  imagenet_md5="253f8cb515780f3b799900260a226db6",
                  about="VGG19 (Simonyan and Zisserman, ICLR 2015) is VGG16 with a fourth convolution in "
                        "each of its last three blocks.", **_VGG),
        ModelSpec("resnet50", "ResNet50", "ResNet50",
                  imagenet_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                  imagenet_md5="4d473c1dd8becc155b73f8504c6f6626", imagenet_folder="resnet",
                  about="ResNet50 (He et al., CVPR 2016) has a 7×7 stem and 4 stages of bottleneck residual "
                        "blocks. Each convolution is shown at its BatchNorm output before the ReLU "
                        "(`…_1_relu`, `…_2_relu`), each block at the sum of its residual branch and "
                        "shortcut before the ReLU (`…_out`).", **_RESNET),
    )
}


def model_spec(name: str) -> ModelSpec:
    """A network of the zoo by its name (a user's network is never looked up: its spec is passed)."""
    if name in MODELS:
        return MODELS[name]
    raise AtlasError(f"unknown model {name!r}: the atlas knows {', '.join(MODELS)}, or give the path of a "
                     ".keras / .h5 model file")
