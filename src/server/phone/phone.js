// The browser softphone: the page is the caller. It asks Parley for a call and a single-use stream token, then speaks
// the Twilio Media Streams protocol itself over a WebSocket, so Parley runs exactly the pipeline a phone call gets.
// The transcript comes from the call's own event stream, the same one the control API and the visualizer read.

const accessToken = new URLSearchParams(location.search).get("access_token");
const withToken = (p) => p + (accessToken ? (p.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(accessToken) : "");
const $ = (id) => document.getElementById(id);

/** What the page is doing, for people (the status line) and for tests and debugging (window.parleyPhone). */
const phone = (window.parleyPhone = { status: "idle", callSid: null, sentFrames: 0, receivedFrames: 0, playedMs: 0, marksEchoed: 0, clears: 0, error: null, endedBy: null });
let session = null;
// Interruptions of Parley's turns, by turn id: the barge-in event comes just before the turn it cut short.
const bargeIns = new Map();

function setStatus(status, detail = "") {
  phone.status = status;
  document.body.dataset.status = status;
  $("status").textContent = detail || status;
  $("call").disabled = status !== "idle" && status !== "ended" && status !== "failed";
  $("hangup").disabled = !$("call").disabled;
}

function fail(message) {
  phone.error = message;
  setStatus("failed", message);
  session?.teardown();
}

/** One chat line per turn; the caller's live partial transcript stays in the last line until its turn is final. */
function addLine(role, text, extra = "") {
  const row = document.createElement("div");
  row.className = "line " + role;
  row.innerHTML = "<b></b> <span></span><small></small>";
  row.querySelector("b").textContent = role === "user" ? "You" : "Parley";
  row.querySelector("span").textContent = text;
  row.querySelector("small").textContent = extra;
  // The caller's words still being recognised stay last.
  $("transcript").insertBefore(row, role === "user" ? null : $("transcript").querySelector(".line.partial"));
  $("transcript").scrollTop = $("transcript").scrollHeight;
  return row;
}

const BY = { speech: "you interrupted", dtmf: "you pressed a key", api: "a new message cut in" };
/**
 * A turn Parley did not finish: what the caller heard of it stays as said, the rest is greyed, and a note under it
 * says who cut it short and what was heard, in words (an interruption before the first word was heard says so).
 */
function addInterrupted(t) {
  const row = addLine("assistant", "");
  row.classList.add("interrupted");
  const span = row.querySelector("span");
  const heard = (t.heardText || "").trim();
  const said = heard && t.text.startsWith(heard) ? heard : "";
  span.textContent = said;
  const rest = document.createElement("span");
  rest.className = "unheard";
  rest.title = "not heard: the caller never got this far";
  rest.textContent = t.text.slice(said.length);
  span.append(rest);
  const cause = bargeIns.get(t.turnId);
  const note = document.createElement("div");
  note.className = "note";
  note.textContent = "↳ " + (cause ? BY[cause.by] || "interrupted" : "cut off") + (heard ? ": you heard “" + heard + "”" : " before you heard any of it");
  row.append(note);
}

/** The end of the call, whoever ended it: the page says so and lets go of the microphone. */
function showEnded() {
  $("state").textContent = "ended";
  showPartial(""); // words still being recognised when the call ended will not become a turn
  $("level").value = 0;
  $("speaker").value = 0;
}
function showPartial(text) {
  let row = $("transcript").querySelector(".line.partial");
  if (!text) return row?.remove();
  row ??= addLine("user", "");
  row.classList.add("partial");
  row.querySelector("span").textContent = text;
}

function onCallEvent(e, s) {
  // A stream still draining after its call ended writes its last lines, but not over the next call's, and the
  // state stays "ended".
  if (session && session !== s) return;
  if (!session && (e.type === "state" || e.type === "snapshot" || e.type === "transcript.partial")) return;
  switch (e.type) {
    case "state":
    case "snapshot": {
      const leaf = (v) => (typeof v === "string" ? v : Object.entries(v || {}).map(([k, s]) => leaf(s) || k).join(" "));
      $("state").textContent = leaf(e.value ?? e.state);
      break;
    }
    case "transcript.partial":
      showPartial(e.text);
      break;
    case "turn": {
      const t = e.turn;
      if (t.role === "user") {
        showPartial("");
        addLine("user", t.text);
      } else if (t.interrupted) addInterrupted(t);
      else addLine("assistant", t.text, t.latency ? ` first audio ${Math.round(t.latency.totalMs)} ms after your turn ended` : "");
      break;
    }
    case "barge-in":
      bargeIns.set(e.turnId, e);
      break;
  }
}

async function startCall() {
  phone.error = null;
  phone.endedBy = null;
  phone.callSid = null;
  bargeIns.clear();
  $("transcript").innerHTML = "";
  setStatus("starting", "Starting the microphone…");
  const s = {
    ctx: null,
    mic: null,
    ws: null,
    events: null,
    streamSid: "MZ" + [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join(""),
    ended: false,
    teardown() {
      this.ended = true;
      // The call's last events (its final turn, say) may still be on their way: the stream closes at its end, or soon.
      if (this.events) setTimeout(() => this.events.close(), 5000);
      if (this.ws && this.ws.readyState <= 1) this.ws.close(1000, "caller hung up");
      this.mic?.getTracks().forEach((t) => t.stop());
      this.ctx?.close().catch(() => {});
      if (session === this) session = null;
      if (phone.callSid) showEnded();
    },
  };
  session = s;
  try {
    // The browser's own echo cancellation keeps Parley from hearing itself through the speakers and barging in on itself.
    s.mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 } });
  } catch (err) {
    return fail("No microphone: " + err.message);
  }
  // Hung up while the browser was still asking for the microphone: it is not needed any more.
  if (s.ended) return s.mic.getTracks().forEach((t) => t.stop());
  s.ctx = new AudioContext({ latencyHint: "interactive" });
  await s.ctx.audioWorklet.addModule("/phone/audio-worklet.js");
  if (s.ended) return s.teardown();
  const capture = new AudioWorkletNode(s.ctx, "parley-capture", { numberOfInputs: 1, numberOfOutputs: 0 });
  const playback = new AudioWorkletNode(s.ctx, "parley-playback", { numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1] });
  s.ctx.createMediaStreamSource(s.mic).connect(capture);
  playback.connect(s.ctx.destination);

  const res = await fetch("/api/phone/calls", { method: "POST", headers: accessToken ? { authorization: "Bearer " + accessToken } : {} });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) return fail("This server requires its API token: open /phone?access_token=<API_TOKEN>.");
  if (!res.ok) return fail("Parley refused the call: " + (body.error || res.status));
  if (s.ended) return; // hung up already; the call Parley made for it expires unused
  phone.callSid = body.callSid;
  $("visualize").href = withToken("/debug?call=" + body.callSid);
  $("visualize").hidden = false;

  s.events = new EventSource(withToken("/api/calls/" + body.callSid + "/events"));
  for (const type of ["snapshot", "state", "transcript.partial", "turn", "barge-in"]) s.events.addEventListener(type, (m) => onCallEvent(JSON.parse(m.data), s));
  s.events.addEventListener("end", () => s.events.close());

  setStatus("connecting", "Connecting…");
  s.ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + body.streamPath);
  let seq = 0;
  let chunk = 0;
  const send = (m) => s.ws.readyState === 1 && s.ws.send(JSON.stringify({ ...m, sequenceNumber: String(++seq) }));
  s.ws.onopen = () => {
    send({ event: "connected", protocol: "Call", version: "1.0.0" });
    send({
      event: "start",
      streamSid: s.streamSid,
      start: {
        streamSid: s.streamSid,
        callSid: body.callSid,
        accountSid: "",
        tracks: ["inbound"],
        customParameters: { token: body.token, callSid: body.callSid },
        mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
      },
    });
    setStatus("live", "In call");
  };
  s.ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.event === "media") {
      const bin = atob(msg.media.payload);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      phone.receivedFrames++;
      playback.port.postMessage({ media: bytes }, [bytes.buffer]);
    } else if (msg.event === "mark") playback.port.postMessage({ mark: msg.mark.name });
    else if (msg.event === "clear") {
      phone.clears++;
      playback.port.postMessage({ clear: true });
    }
  };
  s.ws.onclose = (e) => {
    if (session !== s) return;
    // Parley closes with a reason when it ends the call; a socket that dies without a close frame is a drop.
    phone.endedBy = e.code === 1006 ? "dropped" : "parley";
    setStatus("ended", e.code === 1006 ? "Call dropped: the connection to Parley was lost" : e.reason ? "Call ended: " + e.reason : "Call ended");
    s.teardown();
  };
  s.ws.onerror = () => phone.status === "connecting" && fail("Could not open the media stream.");

  capture.port.onmessage = ({ data }) => {
    if (s.ended) return; // a frame already in flight when the call ended
    $("level").value = data.peak;
    if (s.ws.readyState !== 1) return;
    let bin = "";
    for (let i = 0; i < data.frame.length; i++) bin += String.fromCharCode(data.frame[i]);
    send({ event: "media", streamSid: s.streamSid, media: { track: "inbound", chunk: String(++chunk), timestamp: String(chunk * 20), payload: btoa(bin) } });
    phone.sentFrames++;
  };
  playback.port.onmessage = ({ data }) => {
    if (data.mark) {
      phone.marksEchoed++;
      send({ event: "mark", streamSid: s.streamSid, mark: { name: data.mark } });
    } else if (!s.ended) {
      phone.playedMs = Math.round(data.played / 8);
      $("speaker").value = Math.min(1, data.buffered / 8000);
    }
  };
}

function hangUp() {
  const s = session;
  if (!s) return;
  if (s.ws?.readyState === 1) s.ws.send(JSON.stringify({ event: "stop", streamSid: s.streamSid, stop: { callSid: phone.callSid } }));
  phone.endedBy = "you";
  setStatus("ended", "You hung up");
  s.teardown();
}

$("call").onclick = () => startCall().catch((err) => fail(err.message));
$("hangup").onclick = hangUp;
window.addEventListener("pagehide", hangUp);
setStatus("idle", "Ready. Press Call and speak.");
