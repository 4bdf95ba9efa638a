"""The render floor: what a picture is and how it is made. The views (``views``), the frozen and hashed
render configuration (``config``), the image parameterization (``params``), the robustness transforms
(``transforms``), the objectives (``objectives``), one compiled step of batched gradient ascent
(``step``), the picture's quality measures (``quality``) and the layer renderer (``renderer``). It
imports the network floor and the ground, nothing above.
"""
