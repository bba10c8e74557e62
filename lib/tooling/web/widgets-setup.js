// The book's own glue for saved ipywidgets state (loaded between require.js and the
// @jupyter-widgets/html-manager bundle on pages with widgets; see lib/tooling/book.py).
(function () {
  // 1. The html manager computes the URL of its own files (icon fonts) from its AMD module
  //    name; map that name to the copy served from this build instead of the page's folder.
  var me = document.currentScript && document.currentScript.src;
  var base = me ? me.substring(0, me.lastIndexOf("/") + 1) : "";
  if (window.requirejs) {
    window.requirejs.config({
      paths: { "@jupyter-widgets/html-manager/dist": base + "html-manager-dist" },
    });
  }
  // 2. The html manager typesets widget labels with the MathJax 2 API
  //    (MathJax.Hub.Queue); the book loads MathJax 3. Give it a small MathJax 2 facade that
  //    forwards to MathJax 3, before and after MathJax 3 starts (it replaces window.MathJax).
  function addHub(mj) {
    if (!mj || mj.Hub) return;
    mj.Hub = {
      Queue: function () {
        for (var i = 0; i < arguments.length; i++) {
          var job = arguments[i];
          if (Array.isArray(job) && job[0] === "Typeset" && window.MathJax.typesetPromise) {
            window.MathJax.typesetPromise(job[2] ? [job[2]] : undefined).catch(function () {});
          }
        }
      },
    };
  }
  window.MathJax = window.MathJax || {};
  addHub(window.MathJax);
  var startup = (window.MathJax.startup = window.MathJax.startup || {});
  var previous = startup.ready;
  startup.ready = function () {
    if (previous) previous();
    else window.MathJax.startup.defaultReady();
    addHub(window.MathJax);
  };
})();
