"""The HTML report's inline stylesheet and its tiny inline script (sorting, error capture)."""

from __future__ import annotations

CSS = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#d9e2ec; --bg:#f5f7fa; --good:#1b5e20;
        --warn:#9a6700; --bad:#b42318; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       color:var(--ink); background:var(--bg); }
main { max-width:1240px; margin:0 auto; padding:24px 28px 60px; }
h1 { font-size:24px; margin:0 0 4px; }
h2 { font-size:18px; margin:34px 0 6px; padding-bottom:4px; border-bottom:2px solid var(--line); }
p.lead { color:var(--muted); margin:0 0 16px; }
p.note, figcaption { color:var(--muted); font-size:12.5px; margin:4px 0 10px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(190px,1fr)); gap:12px;
         margin:16px 0; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:22px; font-weight:600; margin-top:2px; }
.card .s { color:var(--muted); font-size:12.5px; }
.story { background:#fff; border-left:4px solid #0072B2; padding:10px 16px; border-radius:4px; }
.story p { margin:6px 0; }
.legend { display:flex; flex-wrap:wrap; gap:14px; margin:10px 0; }
.dev { white-space:nowrap; }
.chip { display:inline-block; width:12px; height:12px; border-radius:3px; vertical-align:-1px;
        margin-right:5px; }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line);
        font-size:13px; }
th, td { padding:5px 9px; border-bottom:1px solid var(--line); text-align:left;
         vertical-align:top; }
th { background:#eef2f6; font-weight:600; white-space:nowrap; }
th.sortable { cursor:pointer; }
th.sortable:after { content:" \\2195"; color:#9aa5b1; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr:hover td { background:#f8fafc; }
.good { color:var(--good); font-weight:600; } .warn { color:var(--warn); font-weight:600; }
.bad { color:var(--bad); font-weight:600; } .muted { color:var(--muted); fill:var(--muted); }
.strong { font-weight:600; }
.bar { position:relative; height:14px; min-width:140px; background:#eef2f6; border-radius:7px;
       overflow:hidden; }
.bar span { position:absolute; left:0; top:0; bottom:0; border-radius:7px; }
.scroll { overflow:auto; max-height:820px; background:#fff; border:1px solid var(--line);
          border-radius:6px; }
svg text { font:12px system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; fill:var(--ink); }
svg text.lbl { font-size:12.5px; } svg text.val { font-size:12px; fill:var(--muted); }
svg text.tiny { font-size:10.5px; fill:var(--muted); font-style:italic; }
svg text.onbar { fill:#fff; font-size:11px; font-weight:600; }
svg text.muted { fill:var(--muted); font-size:11px; }
svg .grid { stroke:#d9e2ec; stroke-width:1; }
svg .band { fill:#ffffff; } svg .band2 { fill:#f5f7fa; }
svg .bound { stroke:var(--bad); stroke-width:1.5; stroke-dasharray:4 3; }
svg .edge { fill:none; stroke:#9aa5b1; stroke-width:1.2; }
svg .edge.cross { stroke:var(--bad); stroke-width:2; stroke-dasharray:5 3; }
svg.graph { display:block; margin:0 auto; }
svg.chart, svg.gantt { max-width:100%; height:auto; background:#fff;
                       border:1px solid var(--line); border-radius:6px; }
details summary { cursor:pointer; color:#0b5cad; }
code { font-size:12.5px; background:#eef2f6; padding:1px 4px; border-radius:3px; }
#js-errors:empty { display:none; }
#js-errors { color:var(--bad); border:1px solid var(--bad); padding:8px; margin:10px 0; }
footer { color:var(--muted); font-size:12px; margin-top:40px; }
"""

# Sorting: click a header of a table with class "sortable"; cells sort by data-v when present.
SCRIPT = """
window.onerror = function (msg, src, line) {
  var box = document.getElementById('js-errors');
  if (box) { box.textContent += 'script error: ' + msg + ' (line ' + line + ')\\n'; }
};
document.addEventListener('DOMContentLoaded', function () {
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th').forEach(function (th, col) {
      th.classList.add('sortable');
      th.addEventListener('click', function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var asc = th.getAttribute('data-dir') !== 'asc';
        th.setAttribute('data-dir', asc ? 'asc' : 'desc');
        rows.sort(function (a, b) {
          var x = a.cells[col], y = b.cells[col];
          var vx = x.getAttribute('data-v'), vy = y.getAttribute('data-v');
          var r = (vx !== null && vy !== null) ? (parseFloat(vx) - parseFloat(vy))
                : x.textContent.localeCompare(y.textContent);
          return asc ? r : -r;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.body.setAttribute('data-ready', 'yes');
});
"""
