"""The networks the atlas knows: which Keras application builds each, how it wants its input, where
its ImageNet weights live, and how its layers group into blocks or stages.

Adding a ``keras.applications`` convnet is one entry here plus its layer table
(``make layer-tables`` writes it from the Keras graph); nothing else names a model. A zoo network is
built without its classifier, or with it (``ModelSpec.classifier``: Keras's full-top ImageNet weights)
where labelled images ask for its accuracy. A user's own network (``--model PATH.keras``) is read by
``generator.network.modelfile`` and its spec handed down; it is never looked up here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    # the classifier: Keras's full-top ImageNet weights file, and the top-1 / top-5 accuracy (%) Keras
    # publishes for it (keras.io/api/applications), shown beside the accuracy the atlas measures
    top_file: str = ""
    top_md5: str = ""
    reference: tuple[float, float] | None = None
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

    @property
    def top_url(self) -> str:
        return f"{KERAS_APPLICATIONS}{self.imagenet_folder or self.name}/{self.top_file}"

    @property
    def classifier(self) -> "ModelSpec":
        """A zoo network with its ImageNet classifier: the whole Keras model, its input fixed at 224 px
        (its Dense layers read a 7x7 map), 1,000 softmax outputs read as logits."""
        if not (self.zoo and self.top_file):
            raise AtlasError(f"{self.name}: the atlas knows no classifier for it")
        head = {"layer": "predictions", "unfuse": True, "activation": "softmax", "classes": 1000, "binary": False}
        return replace(self, head=head, input_size=224)

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
    for spec in (  # reference: Keras's table of applications, top-1 and top-5 on ImageNet's validation set
        ModelSpec("vgg16", "VGG16", "VGG16", imagenet_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                  imagenet_md5="6d6bbae143d832006294945121d1f1fc",
                  top_file="vgg16_weights_tf_dim_ordering_tf_kernels.h5", top_md5="64373286793e3c8b2b4e3219cbf3544b",
                  reference=(71.3, 90.1),
                  about="VGG16 (Simonyan and Zisserman, ICLR 2015) has 5 blocks of 3×3 convolutions, each "
                        "closed by a 2×2 max-pool.", **_VGG),
        ModelSpec("vgg19", "VGG19", "VGG19", imagenet_file="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                  imagenet_md5="253f8cb515780f3b799900260a226db6",
                  top_file="vgg19_weights_tf_dim_ordering_tf_kernels.h5", top_md5="cbe5617147190e668d6c5d5026f83318",
                  reference=(71.3, 90.0),
                  about="VGG19 (Simonyan and Zisserman, ICLR 2015) is VGG16 with a fourth convolution in "
                        "each of its last three blocks.", **_VGG),
        ModelSpec("resnet50", "ResNet50", "ResNet50",
                  imagenet_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                  imagenet_md5="4d473c1dd8becc155b73f8504c6f6626", imagenet_folder="resnet",
                  top_file="resnet50_weights_tf_dim_ordering_tf_kernels.h5", top_md5="2cb95161c43110f7111970584f804107",
                  reference=(74.9, 92.1),
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
