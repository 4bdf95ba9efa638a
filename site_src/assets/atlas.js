/* Accessibility the theme leaves out, on every page (and after each instant navigation): scrolling
   tables, code blocks and a row of tab labels wider than a phone reachable from the keyboard
   (tabindex, with a name), and a name for the search dialog. */
(function () {
  function fix() {
    document.querySelectorAll(".md-typeset__scrollwrap, .md-typeset pre > code, .atlas-sortable, .md-typeset .tabbed-labels").forEach(function (box) {
      var name = box.classList.contains("tabbed-labels") ? "tabs" : box.tagName === "CODE" ? "code" : "table";
      if (!box.hasAttribute("tabindex")) { box.setAttribute("tabindex", "0"); }
      if (!box.hasAttribute("role")) { box.setAttribute("role", "region"); }
      if (!box.hasAttribute("aria-label")) { box.setAttribute("aria-label", name); }
    });
    document.querySelectorAll(".md-search[role=dialog]").forEach(function (dialog) {
      if (!dialog.hasAttribute("aria-label")) { dialog.setAttribute("aria-label", "Search"); }
    });
  }
  if (typeof document$ !== "undefined") { document$.subscribe(fix); } else { document.addEventListener("DOMContentLoaded", fix); }
})();
