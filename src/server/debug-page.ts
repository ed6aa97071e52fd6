/**
 * The live-call visualizer at /debug: the machine's chart (drawn from its definition), the live and recent calls, the
 * selected call's active states highlighted as they change (over the call's SSE events, which carry a state only when
 * it changes, from XState's inspection API, with the event that caused it), and its timeline with per-turn latency bars. An ended call replays from its record.
 */
export const DEBUG_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Parley · calls</title>
<style>
  body { font: 13px system-ui, sans-serif; margin: 0; display: grid; grid-template-columns: 260px 1fr; height: 100vh; }
  aside { border-right: 1px solid #ddd; overflow: auto; padding: 8px; }
  main { display: grid; grid-template-rows: minmax(300px, 62vh) 1fr; overflow: hidden; }
  #chart { overflow: auto; border-bottom: 1px solid #ddd; }
  #chart { position: relative; }
  #chart.fit svg { width: 100%; height: auto; }
  #zoom { position: sticky; top: 4px; left: 4px; z-index: 1; display: inline-flex; gap: 2px; background: #fffc; padding: 2px; border-radius: 6px; }
  #zoom button.on { background: #4e79a7; color: white; }
  #timeline { overflow: auto; padding: 8px; font-family: ui-monospace, monospace; font-size: 12px; }
  .call { padding: 6px; border-radius: 6px; cursor: pointer; margin-bottom: 4px; border: 1px solid #eee; }
  .call.selected { background: #e8f0fb; border-color: #4e79a7; }
  .call .state { color: #555; font-size: 11px; }
  /* The active path: every active state outlined, the innermost (atomic) one filled. */
  g.state.active > rect:first-of-type { stroke: #e8a202; stroke-width: 3; }
  g.state.atomic.active > rect:first-of-type, g.state.final.active > rect:first-of-type { fill: #ffe9a8; }
  .cause { color: #888; }
  .bar { display: inline-block; height: 10px; vertical-align: middle; }
  h2 { font-size: 13px; margin: 8px 0 4px; }
  button { font: inherit; }
</style></head>
<body>
<aside><h2>Live calls</h2><div id="live"></div><h2>Recent calls</h2><div id="recent"></div></aside>
<main><div id="chart" class="fit"><div id="zoom"><button data-zoom="fit" class="on">fit</button><button data-zoom="0.5">50%</button><button data-zoom="1">100%</button></div><div id="svg">loading chart…</div></div><div id="timeline"><em>Select a call.</em></div></main>
<script>
const token = new URLSearchParams(location.search).get("access_token");
const q = (p) => p + (token ? (p.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(token) : "");
const api = (p) => fetch(q(p)).then((r) => r.json());
let selected = null, source = null, t0 = 0;

/** An XState value as the ids of its active state nodes: {live:{active:"listening"}} -> call, call.live, ... */
function activeIds(value, prefix = "call") {
  const ids = [prefix];
  if (typeof value === "string") return ids.concat(prefix + "." + value);
  for (const [k, v] of Object.entries(value || {})) ids.push(...activeIds(v, prefix + "." + k));
  return ids;
}
function highlight(value) {
  document.querySelectorAll("g.state.active").forEach((g) => g.classList.remove("active"));
  for (const id of activeIds(value)) document.querySelector('g.state[data-state="' + CSS.escape(id) + '"]')?.classList.add("active");
  document.getElementById("chart").dataset.active = activeIds(value).join(" ");
  const item = document.querySelector(".call.selected .state");
  if (item) item.textContent = item.textContent.replace(/… .*/, "… " + flat(value));
  followActive();
}
// Zoomed in, the view follows the active state, so a live call never walks off screen.
let zoom = "fit";
function followActive() {
  const leaf = [...document.querySelectorAll("g.state.active")].pop();
  if (zoom !== "fit" && leaf) leaf.scrollIntoView({ block: "center", inline: "center" });
}
function setZoom(z) {
  zoom = z;
  const chart = document.getElementById("chart"), svg = chart.querySelector("svg");
  chart.classList.toggle("fit", z === "fit");
  document.querySelectorAll("#zoom button").forEach((b) => b.classList.toggle("on", b.dataset.zoom === z));
  if (svg) {
    const w = svg.viewBox.baseVal.width, h = svg.viewBox.baseVal.height;
    if (z === "fit") svg.removeAttribute("style");
    else svg.style.cssText = "width:" + w * z + "px;height:" + h * z + "px";
  }
  followActive();
}
document.querySelectorAll("#zoom button").forEach((b) => (b.onclick = () => setZoom(b.dataset.zoom)));
// Transcripts and replies are user and model text: never markup.
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
const quote = (s) => esc(JSON.stringify(s));
const flat = (v) => activeIds(v).slice(-1)[0].replace(/^call\\./, "");
const BAR_TITLES = ["VAD end → transcript (STT)", "transcript → first text (agent)", "first text → first audio (TTS)", "first audio → first frame sent"];
function line(e) {
  const row = document.createElement("div");
  row.className = "event " + e.type.replace(/\\W/g, "-");
  let detail = "";
  if (e.type === "state") detail = flat(e.value) + (e.event ? ' <span class="cause">← ' + esc(e.event) + "</span>" : "");
  else if (e.type.startsWith("transcript")) detail = quote(e.text);
  else if (e.type === "turn") {
    const t = e.turn, l = t.latency;
    detail = t.role + (t.kind ? " " + t.kind : "") + " " + quote(t.text) + (t.interrupted ? " (interrupted; heard " + quote(t.heardText) + ")" : "");
    if (l) detail += " " + ["stt", "agent", "tts", "send"].map((k, i) => '<span class="bar" title="' + BAR_TITLES[i] + " " + l[k + "Ms"] + ' ms" style="width:' + Math.max(1, (l[k + "Ms"] || 0) / 4) + "px;background:" + ["#4e79a7","#f28e2b","#59a14f","#e15759"][i] + '"></span>').join("") + " " + l.totalMs + " ms";
  } else if (e.type === "barge-in") detail = "heard " + quote(e.heardText);
  else if (e.type === "mark") detail = e.turnId + " @" + e.heardMs + " ms" + (e.final ? " (end)" : "");
  else if (e.type === "clear") detail = "turn " + e.turnId;
  row.innerHTML = "+" + ((e.t - t0) / 1000).toFixed(2) + "s <b>" + e.type + "</b> " + detail;
  const tl = document.getElementById("timeline");
  // Stay at the newest line, unless the reader has scrolled up to look at an older one.
  const atEnd = tl.scrollTop + tl.clientHeight >= tl.scrollHeight - 30;
  tl.append(row);
  if (atEnd) tl.scrollTop = tl.scrollHeight;
}
async function select(callSid, live) {
  selected = callSid;
  source?.close();
  document.querySelectorAll(".call").forEach((el) => el.classList.toggle("selected", el.dataset.sid === callSid));
  const tl = document.getElementById("timeline");
  tl.innerHTML = "";
  const rec = await api("/api/calls/" + callSid);
  t0 = rec.createdAt;
  if (live) {
    source = new EventSource(q("/api/calls/" + callSid + "/events"));
    for (const type of ["snapshot", "state", "transcript", "transcript.partial", "turn", "mark", "clear", "barge-in", "call.status", "speech.started", "speech.ended", "stream.started", "stream.closed", "call.ended", "agent.error", "tts.error", "stt.error"])
      source.addEventListener(type, (m) => {
        const e = JSON.parse(m.data);
        if (e.type === "snapshot" || e.type === "state") highlight(e.state ?? e.value);
        if (e.type !== "snapshot" && e.type !== "transcript.partial") line(e);
      });
    source.addEventListener("end", () => source.close());
  } else {
    const b = document.createElement("button");
    b.textContent = "Replay";
    b.onclick = () => rec.states.forEach((s, i) => setTimeout(() => { highlight(s.value); line({ t: s.t, type: "state", value: s.value, event: s.event }); }, (s.t - rec.states[0].t) / 4));
    tl.append(b);
    for (const t of rec.turns) line({ t: t.at, type: "turn", turn: t });
    highlight(rec.state);
  }
}
async function refresh() {
  const { calls } = await api("/api/calls");
  for (const [id, list] of [["live", calls.filter((c) => c.live)], ["recent", calls.filter((c) => !c.live).slice(0, 20)]]) {
    const el = document.getElementById(id);
    el.innerHTML = "";
    for (const c of list) {
      const d = document.createElement("div");
      d.className = "call" + (c.callSid === selected ? " selected" : "");
      d.dataset.sid = c.callSid;
      d.innerHTML = "<div>" + esc((c.direction || "") + " " + (c.from || "")) + "</div><div class=state>" + esc(c.callSid.slice(0, 14)) + "… " + esc(flat(c.state)) + "</div>";
      d.onclick = () => select(c.callSid, c.live);
      el.append(d);
    }
  }
}
const params = new URLSearchParams(location.search);
fetch(q("/debug/chart.svg")).then((r) => r.text()).then((svg) => {
  document.getElementById("svg").innerHTML = svg;
  if (params.get("zoom")) setZoom(params.get("zoom"));
});
refresh().then(() => {
  const sid = params.get("call");
  if (sid) select(sid, !!document.querySelector('#live .call[data-sid="' + CSS.escape(sid) + '"]'));
});
setInterval(refresh, 2000);
</script></body></html>
`;
