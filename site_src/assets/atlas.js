/* Accessibility the theme leaves out, on every page (and after each instant navigation): scrolling
   tables and code blocks reachable from the keyboard (tabindex, with a name), and a name for the
   search dialog. */
(function () {
  function fix() {
    document.querySelectorAll(".md-typeset__scrollwrap, .md-typeset pre > code, .atlas-sortable").forEach(function (box) {
      if (!box.hasAttribute("tabindex")) { box.setAttribute("tabindex", "0"); }
      if (!box.hasAttribute("role")) { box.setAttribute("role", "region"); }
      if (!box.hasAttribute("aria-label")) { box.setAttribute("aria-label", box.tagName === "CODE" ? "code" : "table"); }
    });
    document.querySelectorAll(".md-search[role=dialog]").forEach(function (dialog) {
      if (!dialog.hasAttribute("aria-label")) { dialog.setAttribute("aria-label", "Search"); }
    });
  }
  if (typeof document$ !== "undefined") { document$.subscribe(fix); } else { document.addEventListener("DOMContentLoaded", fix); }
})();
