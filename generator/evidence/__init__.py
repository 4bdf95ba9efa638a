"""The evidence floor: what real images say about a filter. Image sets (``imagesets``), labels and
classes (``labels``, ``classes``), the examples tracker and the trust probe and scores. It imports the
network floor and the ground, nothing above (not the render floor beside it).
"""
