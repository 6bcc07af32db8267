// Draws the patient page's charts. The figures (data + layout) are built by the
// server (services/api/charts.py) and embedded as JSON; this file only hands them
// to plotly.js, which the server serves from the installed plotly package.
(function () {
  "use strict";
  function draw() {
    var block = document.getElementById("psymon-charts");
    if (!block || typeof Plotly === "undefined") { return; }
    var figures = JSON.parse(block.textContent);
    var pending = figures.map(function (figure) {
      var element = document.getElementById(figure.id);
      if (!element) { return Promise.resolve(); }
      return Plotly.newPlot(element, figure.data, figure.layout, {
        displaylogo: false,
        responsive: true,
        modeBarButtonsToRemove: ["lasso2d", "select2d", "toImage"]
      }).then(function () { element.setAttribute("data-drawn", "true"); });
    });
    Promise.all(pending).then(function () {
      document.body.setAttribute("data-charts-drawn", String(figures.length));
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
