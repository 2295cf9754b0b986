// The bundled client: connects to the echo route with wss:// on https pages
// and ws:// on http pages, sends what you type and shows the round-trip time.
"use strict";
(function () {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = scheme + "//" + location.host + "/ws/echo";
  const status = document.getElementById("status");
  const log = document.getElementById("log");
  const input = document.getElementById("text");
  document.getElementById("url").textContent = url;
  let socket = null;
  let sentAt = [];
  let retry = 500;

  function line(text, cls) {
    const li = document.createElement("li");
    li.textContent = text;
    if (cls) li.className = cls;
    log.prepend(li);
  }

  function connect() {
    socket = new WebSocket(url);
    status.textContent = "connecting to " + url + " …";
    status.className = "status";
    socket.onopen = function () {
      retry = 500;
      status.textContent = "connected: " + url;
      status.className = "status ok";
    };
    socket.onmessage = function (ev) {
      const t0 = sentAt.shift();
      const rtt = t0 === undefined ? "" : " (" + (performance.now() - t0).toFixed(1) + " ms)";
      line("echo: " + ev.data + rtt, "in");
    };
    socket.onclose = function (ev) {
      status.textContent = "disconnected (code " + ev.code + "), reconnecting…";
      status.className = "status bad";
      sentAt = [];
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }

  document.getElementById("form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (!socket || socket.readyState !== WebSocket.OPEN || input.value === "") return;
    sentAt.push(performance.now());
    socket.send(input.value);
    line("sent: " + input.value, "out");
    input.value = "";
  });

  window.wssd = { url: url, send: function (t) { sentAt.push(performance.now()); socket.send(t); } };
  connect();
})();
