/**
 * The live-call visualizer at /debug: the machine's chart (drawn from its definition), the live and recent calls, the
 * selected call's active states highlighted as they change (over the call's SSE events, which carry a state only when
 * it changes, from XState's inspection API, with the event that caused it), and its timeline with per-turn latency
 * bars. Whoever arrives mid-call (the softphone links here) first sees the call's past, drawn from its record, then
 * the live events; an ended call replays from its record. Alone, a live call is selected without a click.
 */
export const DEBUG_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Parley · calls</title>
<style>
  body { font: 13px system-ui, sans-serif; margin: 0; display: grid; grid-template-columns: 260px 1fr; height: 100vh; }
  aside { border-right: 1px solid #ddd; overflow: auto; padding: 8px; }
  main { display: grid; grid-template-rows: minmax(300px, 62vh) 1fr; overflow: hidden; }
  #chart { overflow: auto; border-bottom: 1px solid #ddd; position: relative; }
  #zoom { position: sticky; top: 4px; left: 4px; z-index: 1; display: inline-flex; gap: 2px; background: #fffc; padding: 2px; border-radius: 6px; }
  #zoom button.on { background: #4e79a7; color: white; }
  #svg { width: max-content; }
  #timeline { overflow: auto; padding: 8px; font-family: ui-monospace, monospace; font-size: 12px; }
  #timeline .divider { color: #888; border-top: 1px dashed #ccc; margin: 4px 0; padding-top: 2px; }
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
<main><div id="chart"><div id="zoom"><button data-zoom="fit" class="on" title="A readable region around the active state, following it">fit</button><button data-zoom="1">100%</button><button data-zoom="whole" title="The whole chart, small">whole</button></div><div id="svg">loading chart…</div></div><div id="timeline"><em>Select a call.</em></div></main>
<script>
const params = new URLSearchParams(location.search);
const token = params.get("access_token");
const q = (p) => p + (token ? (p.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(token) : "");
const api = (p) => fetch(q(p)).then((r) => r.json());
let selected = null, source = null, t0 = 0, generation = 0;

/** An XState value as the ids of its active state nodes: {live:{active:"listening"}} -> call, call.live, ... */
function activeIds(value, prefix = "call") {
  const ids = [prefix];
  if (typeof value === "string") return ids.concat(prefix + "." + value);
  for (const [k, v] of Object.entries(value || {})) ids.push(...activeIds(v, prefix + "." + k));
  return ids;
}
const stateGroup = (id) => document.querySelector('g.state[data-state="' + CSS.escape(id) + '"]');
let current;
function highlight(value) {
  current = value;
  document.querySelectorAll("g.state.active").forEach((g) => g.classList.remove("active"));
  for (const id of activeIds(value)) stateGroup(id)?.classList.add("active");
  document.getElementById("chart").dataset.active = activeIds(value).join(" ");
  const item = document.querySelector(".call.selected .state");
  if (item) item.textContent = item.textContent.replace(/… .*/, "… " + flat(value));
  follow();
}

// Zoom. The whole chart in the window would put its text at 2-3 px, so "fit" shows a readable region instead: the
// smallest active state around the active leaf that fits the window at a readable scale (the leaf alone if none
// does), centred, and it follows the call. "100%" follows too; "whole" is the overview.
const READABLE = 0.85; // 11 px chart text -> 9.35 px on screen
let zoom = "fit";
function boxOf(id) {
  const r = stateGroup(id)?.querySelector("rect");
  return r && { x: +r.getAttribute("x"), y: +r.getAttribute("y"), w: +r.getAttribute("width"), h: +r.getAttribute("height") };
}
function follow() {
  const chart = document.getElementById("chart"), svg = chart.querySelector("svg");
  if (!svg) return;
  const vb = svg.viewBox.baseVal, ids = (chart.dataset.active || "").split(" ").filter(Boolean);
  const viewW = chart.clientWidth - 24, viewH = chart.clientHeight - 48;
  if (zoom === "whole") {
    const scale = Math.min(viewW / vb.width, viewH / vb.height);
    svg.style.width = vb.width * scale + "px";
    svg.style.height = vb.height * scale + "px";
    return chart.scrollTo(0, 0);
  }
  let region = ids.length ? boxOf(ids[ids.length - 1]) : null, scale = zoom === "fit" ? READABLE : +zoom;
  if (region) {
    for (const id of ids.slice(0, -1).reverse()) {
      const b = boxOf(id);
      if (b && b.w * READABLE <= viewW && b.h * READABLE <= viewH) { region = b; break; }
    }
    if (zoom === "fit") scale = Math.max(READABLE, Math.min(1, viewW / region.w, viewH / region.h));
  }
  svg.style.width = vb.width * scale + "px";
  svg.style.height = vb.height * scale + "px";
  // Without a call, the chart's top left, where a call starts.
  if (!region) return chart.scrollTo(0, 0);
  const s = svg.getBoundingClientRect(), c = chart.getBoundingClientRect();
  const left = s.left - c.left + chart.scrollLeft + (region.x - vb.x + region.w / 2) * scale;
  const top = s.top - c.top + chart.scrollTop + (region.y - vb.y + region.h / 2) * scale;
  chart.scrollTo(left - chart.clientWidth / 2, top - chart.clientHeight / 2);
}
function setZoom(z) {
  zoom = z === "whole" || +z > 0 ? z : "fit";
  document.querySelectorAll("#zoom button").forEach((b) => b.classList.toggle("on", b.dataset.zoom === zoom));
  follow();
}
document.querySelectorAll("#zoom button").forEach((b) => (b.onclick = () => setZoom(b.dataset.zoom)));
addEventListener("resize", follow);

// Transcripts and replies are user and model text: never markup.
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
const quote = (s) => esc(JSON.stringify(s));
const heard = (s) => (s ? "heard " + quote(s) : "heard nothing of it");
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
    detail = t.role + (t.kind ? " " + t.kind : "") + " " + quote(t.text) + (t.interrupted ? " (interrupted; " + heard(t.heardText) + ")" : "");
    if (l) detail += " " + ["stt", "agent", "tts", "send"].map((k, i) => '<span class="bar" title="' + BAR_TITLES[i] + " " + l[k + "Ms"] + ' ms" style="width:' + Math.max(1, (l[k + "Ms"] || 0) / 4) + "px;background:" + ["#4e79a7","#f28e2b","#59a14f","#e15759"][i] + '"></span>').join("") + " " + l.totalMs + " ms";
  } else if (e.type === "barge-in") detail = heard(e.heardText);
  else if (e.type === "mark") detail = e.turnId + " @" + e.heardMs + " ms" + (e.final ? " (end)" : "");
  else if (e.type === "clear") detail = "turn " + e.turnId;
  row.innerHTML = "+" + ((e.t - t0) / 1000).toFixed(2) + "s <b>" + e.type + "</b> " + detail;
  append(row);
}
function append(row) {
  const tl = document.getElementById("timeline");
  // Stay at the newest line, unless the reader has scrolled up to look at an older one.
  const atEnd = tl.scrollTop + tl.clientHeight >= tl.scrollHeight - 30;
  tl.append(row);
  if (atEnd) tl.scrollTop = tl.scrollHeight;
}

/** What a record holds of a call's past, in order: its state changes and its turns, as the events that made them. */
function history(rec) {
  const states = rec.states.map((s) => ({ t: s.t, type: "state", value: s.value, event: s.event }));
  const turns = rec.turns.map((turn) => ({ t: turn.at, type: "turn", turn }));
  return [...states, ...turns].sort((a, b) => a.t - b.t);
}
// The same event from the record and from the live stream (recorded between the stream's start and the record's read).
const keyOf = (e) => (e.type === "state" ? "state " + e.t + " " + JSON.stringify(e.value) : e.type === "turn" ? "turn " + e.turn.role + " " + e.turn.turnId + " " + e.turn.at : null);

const EVENTS = ["snapshot", "state", "transcript", "transcript.partial", "turn", "mark", "clear", "barge-in", "call.status", "speech.started", "speech.ended", "stream.started", "stream.closed", "call.ended", "agent.error", "tts.error", "stt.error"];
/**
 * Follow a call: its event stream starts with a snapshot taken as it subscribes, so the record read after the
 * snapshot holds everything before it; events arriving meanwhile wait, and those the record already has are dropped.
 */
function select(callSid) {
  const gen = ++generation;
  selected = callSid;
  source?.close();
  document.querySelectorAll(".call").forEach((el) => el.classList.toggle("selected", el.dataset.sid === callSid));
  const tl = document.getElementById("timeline");
  tl.innerHTML = "<em>loading the call…</em>";
  let waiting = null, known = new Set();
  const live = (e) => {
    const k = keyOf(e);
    if (k && known.has(k)) return;
    if (e.type === "state") highlight(e.value);
    if (e.type !== "transcript.partial") line(e);
  };
  source = new EventSource(q("/api/calls/" + callSid + "/events"));
  for (const type of EVENTS)
    source.addEventListener(type, async (m) => {
      const e = JSON.parse(m.data);
      if (e.type !== "snapshot") return waiting ? waiting.push(e) : live(e);
      // A (re)connected stream: draw the past again from the record.
      waiting = [];
      highlight(e.state);
      const rec = await api("/api/calls/" + callSid);
      if (gen !== generation) return;
      t0 = rec.createdAt;
      tl.innerHTML = "";
      const past = history(rec);
      known = new Set(past.map(keyOf));
      if (!e.live) replayButton(past);
      past.forEach(line);
      highlight(rec.state);
      if (e.live) {
        const d = document.createElement("div");
        d.className = "divider";
        d.textContent = past.length ? "live from here (above: the call so far, from its record)" : "live";
        append(d);
      }
      const queued = waiting;
      waiting = null;
      queued.forEach(live);
    });
  source.addEventListener("end", () => source.close());
}
function replayButton(past) {
  const b = document.createElement("button");
  b.textContent = "Replay";
  b.onclick = () => {
    const gen = generation, tl = document.getElementById("timeline");
    tl.querySelectorAll(".event").forEach((el) => el.remove());
    const start = past[0]?.t ?? 0;
    for (const e of past)
      setTimeout(() => {
        if (gen !== generation) return;
        if (e.type === "state") highlight(e.value);
        line(e);
      }, (e.t - start) / 4);
  };
  document.getElementById("timeline").append(b);
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
      d.onclick = () => select(c.callSid);
      el.append(d);
    }
  }
  // Nothing chosen and one call going on: that is the call to watch.
  const live = calls.filter((c) => c.live);
  if (!selected && live.length === 1) select(live[0].callSid);
}
fetch(q("/debug/chart.svg")).then((r) => r.text()).then((svg) => {
  document.getElementById("svg").innerHTML = svg;
  setZoom(params.get("zoom") || "fit");
  if (current !== undefined) highlight(current); // a call's state that arrived before its chart
});
if (params.get("call")) select(params.get("call"));
refresh();
setInterval(refresh, 2000);
</script></body></html>
`;
