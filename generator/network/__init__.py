"""The network floor: which networks the atlas knows (``zoo``), a user's Keras file (``modelfile``,
``kerasfile``), weights and their sha256 (``weights``), the layers the atlas shows and their receptive
fields (``layers``, ``selection``), the input map (``inputs``), the backend (``backend``) and how the
cut network computes (``compute``, ``models``). It imports only the ground modules below it.
"""
