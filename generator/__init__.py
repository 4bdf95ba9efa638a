"""VGG16 Filter Atlas: render a feature visualization of every VGG16 conv filter and build the site.

Data flows one way: ``models`` (VGG16 and its weights) -> ``objectives`` / ``network`` (what a
picture maximizes) -> ``params`` / ``transforms`` / ``render`` (batched gradient ascent) -> ``store``
(the atlas on disk) -> ``site`` (MkDocs pages). ``cli`` is the ``atlas`` command. Keras is imported
lazily, because the backend must be chosen before its first import.
"""
