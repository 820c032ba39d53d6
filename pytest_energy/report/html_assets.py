"""The HTML report's page shell: its stylesheet, its one small script and the page
around the body.

Everything is inline: the report is one file that opens offline, from a CI artifact or
an email, and loads nothing. Its Content-Security-Policy says so to the browser too:
no network at all (``default-src 'none'``), and only the script below may run (by its
hash), so a test id that slipped through escaping could still not run code.
"""

from __future__ import annotations

import base64
import hashlib

from pytest_energy.report.html_charts import esc

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}
th,td{padding:2px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}
td[data-v]{text-align:right;white-space:nowrap}
th[data-k]{cursor:pointer;user-select:none;background:#f4f4f4}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
#summary-table td:first-child{font-family:ui-monospace,monospace;font-size:12px;
word-break:break-all;max-width:40em}
td.s{color:#c80}.muted,.notes{color:#666;font-size:12px}.f{color:#b00;font-weight:600}
td>svg{width:120px;height:30px;display:block}
.gate{padding:.5em 1em;border-left:6px solid #999;background:#f7f7f7}
.gate.passed{border-color:#2a7}.gate.regressed{border-color:#c00}.gate.error{border-color:#e80}
svg.chart text{font:11px system-ui,sans-serif;fill:#222}svg.chart text.h{font-weight:600}
svg.chart text.v{text-anchor:end}
svg.chart rect.b{fill:#5b8fc7}svg.chart rect.best{fill:#2a9d5b}svg.chart rect.bad{fill:#bbb}
svg.chart rect.l{fill:#9aa7b5}svg.chart rect.over{fill:#d9534f}
svg.chart line.budget{stroke:#c00;stroke-width:2}svg.chart tspan.bt{fill:#c00;font-weight:700}
td>svg polyline{fill:none;stroke:#5b8fc7;stroke-width:1.5}
td>svg circle{fill:#5b8fc7}td>svg circle.reg{fill:#d00}
td>svg rect.band{fill:#5b8fc7;fill-opacity:.18}
.labels{display:flex;flex-wrap:wrap;gap:12px}
"""

# Sort the table whose header was clicked: numbers by their data-v (missing last),
# text by locale; a second click on the same header reverses.
JS = """
(function(){
function key(row,i,num){var c=row.cells[i];if(!c)return null;
if(num){var v=c.getAttribute('data-v');return v===null||v===''?null:parseFloat(v);}
return c.textContent;}
function sort(th){var table=th.closest('table'),body=table.tBodies[0];
var i=Array.prototype.indexOf.call(th.parentNode.children,th);
var num=th.getAttribute('data-k')==='n';
var asc=th.getAttribute('aria-sort')!=='ascending';
var heads=th.parentNode.children;
for(var h=0;h<heads.length;h++){heads[h].removeAttribute('aria-sort');}
th.setAttribute('aria-sort',asc?'ascending':'descending');
var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(a,b){var x=key(a,i,num),y=key(b,i,num);
if(x===null&&y===null)return 0;if(x===null)return 1;if(y===null)return -1;
var d=num?x-y:x.localeCompare(y);return asc?d:-d;});
var frag=document.createDocumentFragment();
for(var r=0;r<rows.length;r++){frag.appendChild(rows[r]);}body.appendChild(frag);}
document.addEventListener('click',function(e){var th=e.target.closest('th[data-k]');
if(th){sort(th);}});
})();
"""

SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(JS.encode()).digest()).decode()
POLICY = (f"default-src 'none'; style-src 'unsafe-inline'; script-src '{SCRIPT_HASH}'; "
          "img-src data:; base-uri 'none'; form-action 'none'")


def page(title: str, body: str) -> str:
    """The whole document: ``body`` (already escaped HTML) in the page shell."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n"
            f"<script>{JS}</script></body></html>\n")
