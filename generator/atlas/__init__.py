"""The atlas floor: the atlas on disk. Atomic writes and JSON, locks, the store of pictures, records
and manifests, every file name taken from ``generator.paths``. It imports the render, evidence and
network floors and the ground.
"""
