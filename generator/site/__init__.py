"""The site floor, ``atlas site``: the stored atlas -> Markdown pages (from ``templates/``) and images
under ``site_src/``.

Reads only the data layout (``generator.paths``), and writes the generated part of the MkDocs
``docs_dir``: one folder per model (model, block or stage, layer and filter pages, display WebPs,
thumbnails, dataset-example sprites, the JSON downloads), the landing page's model list and the Method
page. Hand-written pages stay as they are.

- ``build``: ``build_site``, the order in which a build writes everything;
- ``urls``: the one address builder (site and downloads roots, links between pages);
- ``templates``: the Jinja set-up and the page writer;
- ``model_site``: one model as its pages see it, and the helpers they share;
- ``model_pages``, ``layer_page``, ``filter_page``, ``landing_page``, ``method_page``: one page kind each;
- ``classes``, ``trust_pages``, ``plots``: classes and accuracy, trust scores and the SVG plots as
  the pages show them; ``escape``: user-given strings as literal text;
- ``assets``: the display pictures and the cache that takes them over from the last build;
- ``staging``: the staging folder swapped in when complete, the marker of generated folders,
  ``stage_project``;
- ``nav``: the nav, from the generated folders, into ``site_src/.nav.yml`` (mkdocs.yml inherits it;
  MkDocs and Zensical both read it);
- ``offsite``: the pictures named by their content for a bucket (``--assets-url``); ``publish``: which
  way a built site can be published (GitHub Pages' 1 GB); ``versions``: versioned permalinks (mike's
  layout, redirects for ``latest`` and the unversioned URLs).

Everything is built into a staging folder (``site_src/.atlas-new``, hidden from MkDocs) and swapped
in when complete, so a failed build leaves the last good pages; display files whose source has not
changed (same size and modification time) are taken over from the last build instead of re-encoded.

A user's own network (a model file) is shown like the zoo's, from what its manifest stores; its folder
is named by its ``--name``, so every generated model folder carries a ``.gitignore`` marker (``MARKER``)
by which the next build, ``stage_project``, git and ``make clean`` know it as generated.

It imports the cluster floor and below, never its sibling ``passes``.
"""

from generator.site.build import build_site
from generator.site.staging import stage_project
from generator.site.urls import downloads_url, relative, relative_md, site_url

__all__ = ["build_site", "downloads_url", "relative", "relative_md", "site_url", "stage_project"]
