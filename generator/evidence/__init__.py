"""The evidence floor: what real images say about a filter. Image sets (``imagesets``), labels and
classes (``labels``, ``label_files``: a labels file matched to the images, ``classes``), the examples tracker (``tracker``: the top and bottom images of every
filter, streamed on the device), and the trust probe and scores (``trust_probe``: the activation
vectors a picture and real images give along the path to a filter; ``trust_scores``: how far they
agree). It imports the network floor and the ground, nothing above (not the render floor beside it).
"""

from generator.evidence.classes import ClassEvidence, ClassNet, accuracy
from generator.evidence.imagesets import (
    ImageSet,
    decode_image,
    display_name,
    list_images,
    load_image,
    write_sample_tiles,
)
from generator.evidence.labels import LabelSet, read_labels
from generator.evidence.tracker import (
    HISTOGRAM_EDGES,
    Tracker,
    auto_examples_batch,
    histogram_edges,
    join_states,
    merge_tracker_states,
)
from generator.evidence.trust_probe import (
    LayerProbe,
    Readout,
    auto_trust_batch,
    footprint,
)
from generator.evidence.trust_scores import (
    SEED_PICTURES,
    TRUST_VERSION,
    FilterEvidence,
    current_against,
    filter_trust,
    is_current,
)

__all__ = [
    "HISTOGRAM_EDGES",
    "SEED_PICTURES",
    "TRUST_VERSION",
    "ClassEvidence",
    "ClassNet",
    "FilterEvidence",
    "ImageSet",
    "LabelSet",
    "LayerProbe",
    "Readout",
    "Tracker",
    "accuracy",
    "auto_examples_batch",
    "auto_trust_batch",
    "current_against",
    "decode_image",
    "display_name",
    "filter_trust",
    "footprint",
    "histogram_edges",
    "is_current",
    "join_states",
    "list_images",
    "load_image",
    "merge_tracker_states",
    "read_labels",
    "write_sample_tiles",
]
