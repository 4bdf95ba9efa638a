"""The site floor: the stored atlas -> Markdown pages under ``site_src/`` that MkDocs builds. One address
builder, assets, pages, plots, escaping, the navigation and the build. It reads the atlas and cluster
floors (never a backend: building a site needs no TensorFlow or JAX).
"""
