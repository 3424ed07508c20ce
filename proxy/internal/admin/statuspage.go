package admin

import (
	"html/template"
	"time"
)

// statusPage is the HTML /status: rendered with the current figures, then
// kept live by a small inline script that polls the JSON /status every two
// seconds and computes requests per second and the error rate per node from
// the counters' differences. No external assets.
var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>tether status</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}
table{border-collapse:collapse;margin-top:1em}th,td{padding:.4em .9em;border-bottom:1px solid #ddd;text-align:left}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#17803d;font-weight:600}.down{color:#c0262d;font-weight:bold}.draining{color:#b26b00;font-weight:600}
#stale{color:#c0262d;display:none}
</style></head><body>
<h1>tether</h1>
<p>up since {{.Started.Format "2006-01-02 15:04:05 MST"}} · <span id="conns">{{.Conns}}</span> client connections · live, every 2s <span id="stale">(status unreachable)</span></p>
<table><thead><tr><th>node</th><th>address</th><th>state</th><th>for</th><th>WebSocket sessions</th><th>in flight</th><th>req/s</th><th>errors</th><th>served</th><th>last error</th></tr></thead><tbody id="nodes">
{{range .Nodes}}<tr id="node-{{.ID}}" data-state="{{.State}}"><td>{{.Name}}</td><td>{{.Addr}}</td><td class="state {{.State}}">{{.State}}{{if .Removed}} (removed){{end}}</td><td class="since">{{ago .Since}}</td><td class="num sessions">{{.Sessions}}</td><td class="num inflight">{{.InFlight}}</td><td class="num rps">–</td><td class="num errs">–</td><td class="num served">{{.Served}}</td><td class="lasterr">{{if .LastError}}{{.LastError}} ({{ago .LastErrorAt}} ago){{end}}</td></tr>
{{end}}</tbody></table>
<div id="preds-box"{{if not .Predecessors}} hidden{{end}}>
<h2 style="font-size:1.1em;margin:1.5em 0 0">older processes still serving</h2>
<p style="margin:.3em 0 0;color:#555">They handed over to this one and keep what could not move (TLS sessions, requests in flight) until it ends or their hard stop.</p>
<table><thead><tr><th>pid</th><th>version</th><th>connections</th><th>WebSocket sessions</th><th>of which TLS</th><th>in flight</th><th>updated</th></tr></thead><tbody id="preds">
{{range .Predecessors}}<tr><td class="num">{{.PID}}</td><td>{{.Version}}</td><td class="num">{{.Conns}}</td><td class="num">{{.Sessions}}</td><td class="num">{{.TLSSessions}}</td><td class="num">{{.InFlight}}</td><td>{{ago .Updated}} ago</td></tr>
{{end}}</tbody></table>
</div>
<script>
"use strict";
let last = null;
function ago(s) { const d = Math.max(0, (Date.now() - Date.parse(s)) / 1000); return d < 120 ? Math.round(d) + "s" : d < 7200 ? Math.round(d / 60) + "m" : Math.round(d / 3600) + "h"; }
function cell(tr, cls, v) { tr.querySelector("." + cls).textContent = v; }
async function refresh() {
  let st;
  try { st = await (await fetch("status?format=json", {cache: "no-store"})).json(); }
  catch (e) { document.getElementById("stale").style.display = "inline"; return; }
  document.getElementById("stale").style.display = "none";
  document.getElementById("conns").textContent = st.client_conns;
  const now = Date.now(), body = document.getElementById("nodes");
  for (const n of st.nodes) {
    let tr = document.getElementById("node-" + n.id);
    if (!tr) {
      if (!body.rows.length) continue;
      tr = body.rows[0].cloneNode(true); tr.id = "node-" + n.id; body.appendChild(tr);
      tr.cells[0].textContent = n.name; tr.cells[1].textContent = n.addr;
    }
    tr.dataset.state = n.state;
    const s = tr.querySelector(".state"); s.textContent = n.state + (n.removed ? " (removed)" : ""); s.className = "state " + n.state;
    cell(tr, "since", ago(n.since)); cell(tr, "sessions", n.ws_sessions); cell(tr, "inflight", n.in_flight);
    cell(tr, "served", n.served); cell(tr, "lasterr", n.last_error ? n.last_error + " (" + ago(n.last_error_at) + " ago)" : "");
    const p = last && last.nodes[n.id];
    if (p) {
      const dt = (now - last.at) / 1000, da = n.answers - p.answers, de = n.errors_5xx - p.errors_5xx;
      cell(tr, "rps", (da / dt).toFixed(1));
      cell(tr, "errs", da > 0 ? (100 * de / da).toFixed(1) + "%" : "0%");
    }
  }
  for (const tr of [...body.rows]) { if (!st.nodes.some(n => "node-" + n.id === tr.id)) tr.remove(); }
  const preds = st.predecessors || [], pb = document.getElementById("preds");
  document.getElementById("preds-box").hidden = !preds.length;
  pb.replaceChildren(...preds.map(p => {
    const tr = document.createElement("tr");
    for (const [v, num] of [[p.pid, 1], [p.version, 0], [p.conns, 1], [p.sessions, 1], [p.tls_sessions, 1], [p.in_flight, 1], [ago(p.updated) + " ago", 0]]) {
      const td = tr.insertCell(); td.textContent = v; if (num) td.className = "num";
    }
    return tr;
  }));
  last = {at: now, nodes: Object.fromEntries(st.nodes.map(n => [n.id, n]))};
}
refresh(); setInterval(refresh, 2000);
</script>
</body></html>
`))
