// The microphone page: 16 kHz mono 16-bit PCM in 100 ms binary frames to
// /ws/asr on this page's own host, wss:// on an https:// page (browsers give
// the microphone only to secure pages) and ws:// on an http:// one; Stop
// sends {"eof": 1} and shows the final result.
"use strict";
const $ = (id) => document.getElementById(id);
const url = (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/ws/asr";
let ws = null;
let audio = null; // { ctx, stream, node }
let sent = 0;

function status(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

async function start() {
  $("start").disabled = true;
  $("partial").textContent = $("final").textContent = "";
  sent = 0;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    const ctx = new AudioContext();
    await ctx.audioWorklet.addModule("pcm-worklet.js");
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if ("partial" in m) $("partial").textContent = m.partial;
      if ("final" in m) {
        $("final").textContent = m.final;
        Object.assign($("final").dataset, { seconds: m.seconds, segments: m.segments, bytes: m.bytes });
      }
    };
    ws.onclose = (ev) => {
      status(ev.code === 1000 ? "closed" : "error", `closed (code ${ev.code}${ev.reason ? ": " + ev.reason : ""})`);
      stopAudio();
      $("start").disabled = false;
      $("stop").disabled = true;
    };
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error("could not connect to " + url));
    });
    status("open", "connected to " + url);
    const node = new AudioWorkletNode(ctx, "pcm16k");
    node.port.onmessage = (ev) => {
      if (ev.data.pcm && ws.readyState === WebSocket.OPEN) {
        ws.send(ev.data.pcm);
        sent += ev.data.pcm.byteLength;
        $("sent").dataset.value = sent;
        $("sent").textContent = sent.toLocaleString("en-US");
      }
      if (ev.data.last && ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ eof: 1 }));
        status("finishing", "end sent; waiting for the final result");
      }
    };
    const sink = ctx.createGain(); // silent: keeps the graph pulling the worklet
    sink.gain.value = 0;
    ctx.createMediaStreamSource(stream).connect(node).connect(sink).connect(ctx.destination);
    audio = { ctx, stream, node };
    $("stop").disabled = false;
  } catch (e) {
    status("error", `${e.name}: ${e.message}`);
    stopAudio();
    $("start").disabled = false;
  }
}

function stop() {
  $("stop").disabled = true;
  if (audio) audio.node.port.postMessage("flush"); // the worklet answers with the last frame, then {last: true}
}

function stopAudio() {
  if (!audio) return;
  audio.stream.getTracks().forEach((t) => t.stop());
  audio.ctx.close();
  audio = null;
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
if (!window.isSecureContext) status("error", "the microphone needs https://");
