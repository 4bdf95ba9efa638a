"""The network floor: which networks the atlas knows (``zoo``) and their ImageNet classifiers
(``classifier``), a user's Keras file (``modelfile``, ``kerasfile``) and the pixel scaling at its input
(``input_ops``), weights and their sha256 (``weights``), the layers the atlas shows and their receptive
fields (``layers``, ``selection``), the input map (``inputs``), the backend (``backend``) and how the
cut network computes (``compute``, ``models``). It imports only the ground modules below it.
"""
