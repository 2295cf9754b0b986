// The bundled wssd browser client: Chat, Echo and Microphone panels.
//
// Plain JavaScript, no build step, no network fetches besides the page's own
// WebSockets. Each socket URL is wss:// on an https:// page and ws:// on an
// http:// page, on the page's own host; a route field may also hold a full
// ws:// or wss:// URL. The chat wire contract is docs/chat.md.
//
// Stable element ids (tests drive the page through these):
//
//   tabs             #tab-chat #tab-echo #tab-mic (buttons, aria-selected)
//                    #panel-chat #panel-echo #panel-mic (sections, hidden when not shown)
//                    the URL hash (#chat, #echo, #mic) picks the first panel shown
//   socket status    #chat-status #echo-status #mic-status: text, class ok|bad|wait,
//                    data-state = idle|connecting|open|reconnecting|closing|closed|error
//                    (idle: no socket since the panel was last closed; closed: the
//                    last socket ended, by the page or by the server),
//                    data-hint = "auth" when the last socket closed before it opened
//                    (a refused handshake, e.g. 401: the text says the route may need
//                    a token), "" otherwise
//
//   access token     #auth-token (form #auth-token-form; saved in localStorage
//                    "wssd.token"), #auth-token-show (shows/hides it),
//                    #auth-token-state (data-set=true|false): every socket URL gets
//                    ?access_token=TOKEN when set (browsers cannot set headers on a
//                    WebSocket); status lines show the URL with the token as "…"
//
//   chat             #chat-route #chat-room #chat-username #chat-join #chat-leave
//                    (form #chat-join-form)
//                    #chat-error: last error, "CODE: message", data-code=CODE (hidden when none)
//                    #chat-where (shown when not in a room), #chat-where-joined with
//                      #chat-current-room #chat-me (shown when in one)
//                    #chat-messages: li.msg (data-id, data-from; .time .from .text;
//                      .history for history, .mine for own), li.event (presence,
//                      joined/left; .moderation for moderation events), li.error
//                    #chat-text #chat-send (form #chat-send-form)
//                    #chat-members: li[data-username] (li.me for this page), #chat-member-count
//                    #mod-password #mod-auth (form #mod-auth-form)
//                    #mod-state (data-moderator=true|false)
//                    #mod-target (select of members) #mod-secs #mod-kick #mod-mute #mod-ban
//
//   echo             #echo-route #echo-connect #echo-text #echo-send (form #echo-form)
//                    #echo-file #echo-send-file
//                    #echo-rtt (text "N.N ms", data-ms)
//                    #echo-log: li.out (sent), li.in (reply; .data, .rtt), newest first
//
//   microphone       #mic-route #mic-start #mic-stop
//                    #mic-end: text sent after the last frame on Stop (empty: none)
//                    #mic-processing: checkbox, the browser's voice processing
//                      (echo cancellation, noise suppression, auto gain); off by default
//                    on Stop the partial last frame is sent, then #mic-end, and
//                      #mic-status shows data-state=closing until the last replies
//                      are in (server closed, 1.5 s without a message, or 5 s)
//                    #mic-message: why the mic cannot start or what went wrong
//                      (data-kind = insecure|unavailable|denied|error; hidden when none)
//                    #mic-level (meter; aria-valuenow = last RMS 0..1, data-max = highest RMS)
//                    #mic-level-bar #mic-level-db (level in dBFS)
//                    #mic-bytes #mic-frames #mic-bytes-in #mic-text-count #mic-dropped
//                      (counters; data-value holds the plain number)
//                    #mic-format
//                    #mic-replies: li per text reply, newest first
//
// window.wssd exposes the three panels' state for debugging.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // wssd's default route set; an empty route field means these.
  const DEFAULT_ROUTES = { chat: "/ws/chat", echo: "/ws/echo", mic: "/ws/echo" };

  /** The WebSocket URL of a route field: a path on this host, or a full ws(s):// URL. */
  function socketUrl(route) {
    route = route.trim();
    if (/^wss?:\/\//i.test(route)) return route;
    if (!route.startsWith("/")) route = "/" + route;
    return scheme + "//" + location.host + route;
  }

  /** The access token field's value (empty: none). */
  function accessToken() {
    return $("auth-token").value.trim();
  }

  /** A socket URL with ?access_token= when a token is set. */
  function withToken(url) {
    const token = accessToken();
    if (token === "") return url;
    try {
      const u = new URL(url);
      u.searchParams.set("access_token", token);
      return u.toString();
    } catch (e) {
      return url;
    }
  }

  /** A socket URL as shown on the page: never the token itself. */
  function shownUrl(url) {
    return url.replace(/([?&]access_token=)[^&#]*/, "$1…");
  }

  /** Why a socket closed before it ever opened, with what to try. */
  function refusedText(ev) {
    const what = "could not open the socket (code " + ev.code + ")";
    return accessToken() === ""
      ? what + ": this route may need a token; enter it under Access token"
      : what + ": the server refused it or is unreachable; check the access token (wrong or expired?)";
  }

  function clearChildren(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
  }

  /** Keeps a list at most `max` items long, dropping from the old end. */
  function trim(list, max, oldAtEnd) {
    while (list.children.length > max) {
      list.removeChild(oldAtEnd ? list.lastElementChild : list.firstElementChild);
    }
  }

  function setCounter(el, n) {
    el.dataset.value = String(n);
    el.textContent = n.toLocaleString("en-US");
  }

  const CLOSE_REASONS = {
    1000: "normal close",
    1001: "server going away",
    1006: "connection lost",
    1008: "policy violation",
    1009: "message too big",
    1011: "server error",
    1014: "bad gateway",
    4001: "kicked by a moderator",
    4003: "banned from this room",
  };

  function describeClose(ev) {
    const what = ev.reason || CLOSE_REASONS[ev.code] || "closed";
    return what + " (code " + ev.code + ")";
  }

  // --- one reconnecting WebSocket per panel --------------------------------

  /**
   * A WebSocket with a status line and reconnection with backoff.
   * opts: status (element), route (() => string), onopen, onmessage(ev),
   * onclose(ev) -> false to stay closed instead of reconnecting.
   */
  function Conn(opts) {
    this.opts = opts;
    this.ws = null;
    this.url = "";
    this.wanted = false; // reconnect when dropped
    this.attempt = 0;
    this.timer = null;
    this.waiters = [];
    // How the last socket ended when the server (or the network) closed it
    // rather than close(); cleared when a socket opens and by close().
    this.ended = "";
  }

  /** tone: ok | wait | bad | "" (neutral); by default from the state. */
  Conn.prototype.setStatus = function (state, text, tone) {
    const el = this.opts.status;
    el.dataset.state = state;
    el.dataset.hint = "";
    el.textContent = text;
    if (tone === undefined) {
      tone = state === "open" ? "ok" : state === "connecting" || state === "reconnecting" ? "wait" : state === "idle" ? "" : "bad";
    }
    el.className = "status" + (tone ? " " + tone : "");
  };

  Conn.prototype.isOpen = function () {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  };

  /** Opens (or reopens when the route changed) the socket. */
  Conn.prototype.open = function () {
    const url = withToken(socketUrl(this.opts.route()));
    this.wanted = true;
    if (this.ws && this.url === url && this.ws.readyState <= WebSocket.OPEN) return;
    this.teardown();
    clearTimeout(this.timer);
    this.timer = null;
    this.url = url;
    this.ended = "";
    let ws;
    let opened = false;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this.wanted = false;
      this.setStatus("error", "cannot open " + shownUrl(url) + ": " + e.message);
      this.settle(new Error(e.message));
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.setStatus("connecting", "connecting to " + shownUrl(url) + " …");
    ws.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.setStatus("open", "connected to " + shownUrl(url));
      this.settle(null);
      if (this.opts.onopen) this.opts.onopen();
    };
    ws.onmessage = (ev) => this.opts.onmessage(ev);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      // A handshake the server refused (401 for a missing or wrong token,
      // 403, 404...) reaches the page only as a close before any open.
      const how = opened ? describeClose(ev) : refusedText(ev);
      this.ended = how;
      this.settle(new Error(how));
      const again = this.opts.onclose ? this.opts.onclose(ev) !== false : true;
      if (!this.wanted) {
        this.setStatus("closed", "closed: " + how);
      } else if (!again) {
        this.wanted = false;
        this.setStatus("closed", "closed: " + how);
      } else {
        this.attempt += 1;
        const delay = Math.min(500 * Math.pow(2, this.attempt - 1), 15000) * (0.8 + Math.random() * 0.4);
        this.setStatus(
          "reconnecting",
          "disconnected: " + how + "; reconnecting in " + (delay / 1000).toFixed(1) + " s (attempt " + this.attempt + ")",
        );
        this.timer = setTimeout(() => {
          this.timer = null;
          if (this.wanted) this.open();
        }, delay);
      }
      this.opts.status.dataset.hint = opened ? "" : "auth";
    };
  };

  /** Resolves when the socket is open; rejects when it closes first. */
  Conn.prototype.whenOpen = function () {
    this.open();
    if (this.isOpen()) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  };

  Conn.prototype.settle = function (err) {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) (err ? w.reject(err) : w.resolve());
  };

  Conn.prototype.teardown = function () {
    if (!this.ws) return;
    const ws = this.ws;
    this.ws = null;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close(1000);
    } catch (e) {
      // already closed
    }
  };

  /**
   * Closes on purpose: no reconnection. The status is `closed` when a socket
   * was open or the server had closed it first (its reason is kept in the
   * text), `idle` when there was none.
   */
  Conn.prototype.close = function (text) {
    this.wanted = false;
    clearTimeout(this.timer);
    this.timer = null;
    const had = !!this.ws;
    const ended = this.ended;
    this.ended = "";
    this.teardown();
    this.settle(new Error("closed"));
    this.attempt = 0;
    text = text || "not connected";
    if (had) {
      this.setStatus("closed", text, "");
    } else if (ended) {
      this.setStatus("closed", text + "; closed by the server: " + ended, "");
    } else {
      this.setStatus("idle", text, "");
    }
  };

  Conn.prototype.send = function (data) {
    if (!this.isOpen()) return false;
    this.ws.send(data);
    return true;
  };

  // --- tabs ----------------------------------------------------------------

  const PANELS = ["chat", "echo", "mic"];
  const shown = {};
  function showPanel(name) {
    for (const p of PANELS) {
      const on = p === name;
      $("tab-" + p).setAttribute("aria-selected", on ? "true" : "false");
      $("tab-" + p).tabIndex = on ? 0 : -1;
      $("panel-" + p).hidden = !on;
    }
    if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
    if (!shown[name]) {
      shown[name] = true;
      if (name === "echo") echo.conn.open();
    }
  }
  for (const p of PANELS) {
    $("tab-" + p).addEventListener("click", () => showPanel(p));
    $("tab-" + p).addEventListener("keydown", (ev) => {
      const i = PANELS.indexOf(p);
      const next = ev.key === "ArrowRight" ? PANELS[(i + 1) % 3] : ev.key === "ArrowLeft" ? PANELS[(i + 2) % 3] : null;
      if (next) {
        showPanel(next);
        $("tab-" + next).focus();
      }
    });
  }

  // --- chat ----------------------------------------------------------------

  const chat = {
    room: null, // the room this connection is in
    me: null,
    members: [],
    moderator: false,
    password: null, // kept for re-auth after a reconnect
    rejoin: null, // {room, username} to join again after a reconnect
    conn: null,
  };

  const chatEls = {
    messages: $("chat-messages"),
    members: $("chat-members"),
    error: $("chat-error"),
    text: $("chat-text"),
    target: $("mod-target"),
  };

  function chatShowError(code, message) {
    chatEls.error.hidden = false;
    chatEls.error.dataset.code = code;
    chatEls.error.textContent = code + ": " + message;
  }

  function chatClearError() {
    chatEls.error.hidden = true;
    chatEls.error.dataset.code = "";
    chatEls.error.textContent = "";
  }

  function fmtTime(ts) {
    const d = new Date(typeof ts === "number" ? ts : Date.now());
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function chatScroll() {
    const log = chatEls.messages;
    log.scrollTop = log.scrollHeight;
  }

  function chatAddMessage(m, history) {
    const li = document.createElement("li");
    li.className = "msg" + (history ? " history" : "") + (m.from === chat.me ? " mine" : "") + (m.from === "server" ? " server" : "");
    if (m.id !== undefined) li.dataset.id = String(m.id);
    li.dataset.from = String(m.from);
    const time = document.createElement("time");
    time.className = "time";
    if (typeof m.ts === "number") time.dateTime = new Date(m.ts).toISOString();
    time.textContent = fmtTime(m.ts);
    const from = document.createElement("span");
    from.className = "from";
    from.textContent = String(m.from);
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = String(m.text);
    li.append(time, from, text);
    chatEls.messages.appendChild(li);
    trim(chatEls.messages, 500, false);
    chatScroll();
  }

  function chatEvent(text, cls) {
    const li = document.createElement("li");
    li.className = "event" + (cls ? " " + cls : "");
    const time = document.createElement("time");
    time.className = "time";
    time.textContent = fmtTime();
    const span = document.createElement("span");
    span.className = "text";
    span.textContent = text;
    li.append(time, span);
    chatEls.messages.appendChild(li);
    trim(chatEls.messages, 500, false);
    chatScroll();
  }

  function chatRenderMembers() {
    clearChildren(chatEls.members);
    for (const name of chat.members) {
      const li = document.createElement("li");
      li.dataset.username = name;
      li.textContent = name;
      if (name === chat.me) {
        li.className = "me";
        const you = document.createElement("span");
        you.className = "you";
        you.textContent = " (you)";
        li.appendChild(you);
      } else {
        li.title = "pick " + name + " for a moderator action";
        li.addEventListener("click", () => {
          chatEls.target.value = name;
        });
      }
      chatEls.members.appendChild(li);
    }
    $("chat-member-count").textContent = String(chat.members.length);
    const keep = chatEls.target.value;
    clearChildren(chatEls.target);
    const none = document.createElement("option");
    none.value = "";
    none.textContent = "member…";
    chatEls.target.appendChild(none);
    for (const name of chat.members) {
      if (name === chat.me) continue;
      const o = document.createElement("option");
      o.value = o.textContent = name;
      chatEls.target.appendChild(o);
    }
    chatEls.target.value = chat.members.includes(keep) && keep !== chat.me ? keep : "";
  }

  function chatSetJoined(room, me) {
    chat.room = room;
    chat.me = me;
    const inRoom = room !== null;
    $("chat-current-room").textContent = inRoom ? room : "";
    $("chat-me").textContent = inRoom ? me : "";
    $("chat-where").hidden = inRoom;
    $("chat-where-joined").hidden = !inRoom;
    $("chat-join").disabled = inRoom;
    $("chat-leave").disabled = !inRoom;
    chatEls.text.disabled = !inRoom;
    $("chat-send").disabled = !inRoom;
    chatEls.text.placeholder = inRoom ? "message to " + room : "join a room to chat";
    if (!inRoom) {
      chat.members = [];
      chatRenderMembers();
    }
  }

  function chatSetModerator(on) {
    chat.moderator = on;
    const el = $("mod-state");
    el.dataset.moderator = on ? "true" : "false";
    el.textContent = on ? "signed in as moderator" : "not signed in as moderator";
    el.className = on ? "hint ok-text" : "hint";
  }

  function onChatMessage(ev) {
    if (typeof ev.data !== "string") {
      chatEvent("unexpected binary message (" + ev.data.byteLength + " bytes)", "error");
      return;
    }
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch (e) {
      chatEvent("unreadable message from the server: " + ev.data.slice(0, 200), "error");
      return;
    }
    if (!m || typeof m !== "object") return;
    switch (m.type) {
      case "joined":
        chatClearError();
        clearChildren(chatEls.messages);
        chatSetJoined(m.room, m.username);
        chat.rejoin = { room: m.room, username: m.username };
        // A moderator by identity (the route's moderators or claim) is one
        // from the start; the server says so in every joined.
        if (typeof m.moderator === "boolean" && m.moderator !== chat.moderator) chatSetModerator(m.moderator);
        chat.members = Array.isArray(m.members) ? m.members.map(String) : [m.username];
        chatRenderMembers();
        if (Array.isArray(m.history)) for (const h of m.history) chatAddMessage(h, true);
        chatEvent("you joined " + m.room + " as " + m.username);
        chatEls.text.focus();
        break;
      case "message":
        if (chat.room === null || m.room === undefined || m.room === chat.room) chatAddMessage(m, false);
        if (m.from === chat.me) chatClearError();
        break;
      case "presence":
        if (m.room !== undefined && m.room !== chat.room) break;
        // Set updates: after a broker outage the server may repeat a join
        // for someone already listed; only real changes are shown.
        if (m.event === "join") {
          if (!chat.members.includes(m.username)) {
            chat.members.push(m.username);
            chatEvent(m.username + " joined");
          }
        } else if (m.event === "leave") {
          if (chat.members.includes(m.username)) {
            chat.members = chat.members.filter((n) => n !== m.username);
            chatEvent(m.username + " left");
          }
        }
        chatRenderMembers();
        break;
      case "left":
        chatClearError();
        chatSetJoined(null, null);
        chat.rejoin = null;
        chatEvent("you left " + m.room);
        break;
      case "authenticated":
        if (m.moderator) chatClearError();
        chatSetModerator(!!m.moderator);
        chatEvent(m.moderator ? "signed in as moderator" : "moderator sign-in refused");
        break;
      case "moderation": {
        const target = m.username === chat.me ? "you" : m.username;
        let text;
        if (m.action === "mute") text = m.by + " muted " + target + " for " + m.secs + " s";
        else if (m.action === "kick") text = m.by + " kicked " + target;
        else if (m.action === "ban") text = m.by + " banned " + target;
        else text = m.by + " " + m.action + " " + target;
        chatEvent(text, "moderation");
        break;
      }
      case "error":
        chatShowError(String(m.code), String(m.message));
        chatEvent(m.code + ": " + m.message, "error");
        if (m.code === "name_taken" || m.code === "banned" || m.code === "invalid_name" || m.code === "invalid_room") chat.rejoin = null;
        if (m.code === "bad_password") chat.password = null;
        break;
      default:
        chatEvent("unknown message from the server: " + ev.data.slice(0, 200), "error");
    }
  }

  chat.conn = new Conn({
    status: $("chat-status"),
    route: () => $("chat-route").value.trim() || DEFAULT_ROUTES.chat,
    onmessage: onChatMessage,
    onopen: () => {
      // After a reconnect: sign in and join again.
      if (chat.password !== null) chat.conn.send(JSON.stringify({ type: "auth", password: chat.password }));
      if (chat.rejoin) chat.conn.send(JSON.stringify({ type: "join", room: chat.rejoin.room, username: chat.rejoin.username }));
    },
    onclose: (ev) => {
      const wasIn = chat.room;
      chatSetJoined(null, null);
      chatSetModerator(false);
      if (ev.code === 4001 || ev.code === 4003) {
        const room = wasIn || (chat.rejoin && chat.rejoin.room) || "the room";
        chat.rejoin = null;
        if (ev.code === 4001) chatShowError("kicked", "a moderator removed you from " + room + " (close code 4001); press Join to come back");
        else chatShowError("banned", "you are banned from " + room + " (close code 4003)");
        chatEvent(describeClose(ev), "error");
        return false;
      }
      if (wasIn) chatEvent("connection dropped: " + describeClose(ev), "error");
      if (ev.code === 1008) {
        chat.rejoin = null;
        chatShowError("closed", describeClose(ev));
        return false;
      }
      return true;
    },
  });

  function chatSend(obj) {
    return chat.conn
      .whenOpen()
      .then(() => {
        chat.conn.send(JSON.stringify(obj));
      })
      .catch((e) => chatShowError("connection", "could not reach " + shownUrl(chat.conn.url) + ": " + e.message));
  }

  $("chat-route").addEventListener("change", () => {
    if (chat.conn.wanted) {
      chat.rejoin = null;
      chat.conn.close();
      chatSetJoined(null, null);
    }
  });

  $("chat-join-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const room = $("chat-room").value;
    const username = $("chat-username").value;
    if (room === "" || username === "") {
      chatShowError("missing", room === "" ? "enter a room" : "enter a name");
      return;
    }
    try {
      localStorage.setItem("wssd.chat.username", username);
      localStorage.setItem("wssd.chat.room", room);
    } catch (e) {
      // storage may be off
    }
    chatSend({ type: "join", room: room, username: username });
  });

  $("chat-leave").addEventListener("click", () => {
    chat.rejoin = null;
    chatSend({ type: "leave" });
  });

  $("chat-send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = chatEls.text.value;
    if (text === "" || chat.room === null) return;
    if (chat.conn.send(JSON.stringify({ type: "message", text: text }))) chatEls.text.value = "";
  });

  $("mod-auth-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const password = $("mod-password").value;
    if (password === "") return;
    chat.password = password;
    $("mod-password").value = "";
    chatSend({ type: "auth", password: password });
  });

  function modAction(action) {
    const username = chatEls.target.value;
    if (username === "") {
      chatShowError("missing", "pick a member first");
      return;
    }
    const msg = { type: action, username: username };
    if (action === "mute") {
      const secs = parseInt($("mod-secs").value, 10);
      msg.secs = Number.isFinite(secs) && secs > 0 ? Math.min(secs, 86400) : 60;
    }
    chatSend(msg);
  }
  $("mod-kick").addEventListener("click", () => modAction("kick"));
  $("mod-mute").addEventListener("click", () => modAction("mute"));
  $("mod-ban").addEventListener("click", () => modAction("ban"));

  try {
    $("chat-username").value = localStorage.getItem("wssd.chat.username") || "guest-" + Math.floor(1000 + Math.random() * 9000);
    $("chat-room").value = localStorage.getItem("wssd.chat.room") || "lobby";
  } catch (e) {
    $("chat-username").value = "guest-" + Math.floor(1000 + Math.random() * 9000);
  }

  // --- echo ----------------------------------------------------------------

  const echo = { sent: [], conn: null };
  const echoLog = $("echo-log");

  function echoLine(cls, label, data, rtt) {
    const li = document.createElement("li");
    li.className = cls;
    const l = document.createElement("span");
    l.className = "label";
    l.textContent = label;
    const d = document.createElement("span");
    d.className = "data";
    d.textContent = data;
    li.append(l, d);
    if (rtt !== undefined) {
      const r = document.createElement("span");
      r.className = "rtt";
      r.textContent = rtt.toFixed(1) + " ms";
      li.appendChild(r);
    }
    echoLog.prepend(li);
    trim(echoLog, 200, true);
  }

  echo.conn = new Conn({
    status: $("echo-status"),
    route: () => $("echo-route").value.trim() || DEFAULT_ROUTES.echo,
    onmessage: (ev) => {
      const t0 = echo.sent.shift();
      const rtt = t0 === undefined ? undefined : performance.now() - t0;
      if (rtt !== undefined) {
        $("echo-rtt").textContent = rtt.toFixed(1) + " ms";
        $("echo-rtt").dataset.ms = rtt.toFixed(3);
      }
      if (typeof ev.data === "string") echoLine("in", "reply", ev.data, rtt);
      else echoLine("in binary", "reply", "binary, " + ev.data.byteLength.toLocaleString("en-US") + " bytes", rtt);
    },
    onclose: () => {
      echo.sent = [];
      return true;
    },
  });

  function echoSend(data, label) {
    if (!echo.conn.isOpen()) {
      echoLine("error", "not sent", "the socket is not open (" + echo.conn.opts.status.textContent + ")");
      echo.conn.open();
      return false;
    }
    echo.sent.push(performance.now());
    echo.conn.send(data);
    echoLine("out", "sent", label);
    return true;
  }

  $("echo-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("echo-text").value;
    if (t === "") return;
    if (echoSend(t, t)) $("echo-text").value = "";
  });

  $("echo-send-file").addEventListener("click", () => {
    const f = $("echo-file").files[0];
    if (!f) {
      echoLine("error", "not sent", "choose a file first");
      return;
    }
    f.arrayBuffer().then(
      (buf) => echoSend(buf, f.name + " (binary, " + buf.byteLength.toLocaleString("en-US") + " bytes)"),
      (e) => echoLine("error", "not sent", "cannot read " + f.name + ": " + e.message),
    );
  });

  $("echo-connect").addEventListener("click", () => {
    echo.conn.close();
    echo.conn.open();
  });
  $("echo-route").addEventListener("change", () => {
    echo.conn.close();
    echo.conn.open();
  });

  // --- microphone ----------------------------------------------------------

  const TARGET_RATE = 16000;
  const FRAME_MS = 100;
  // After Stop, the socket stays open for the last replies (a recognizer's
  // final transcript): until the server closes it, nothing has arrived for
  // DRAIN_QUIET_MS, or DRAIN_MAX_MS in all.
  const DRAIN_QUIET_MS = 1500;
  const DRAIN_MAX_MS = 5000;

  // The AudioWorklet: mixes to mono, downsamples from the context rate to
  // 16 kHz (averaging each output sample's span of input samples, a box
  // low-pass), converts to 16-bit little-endian PCM and posts 100 ms frames
  // with their RMS level.
  const WORKLET = `
class WssdPcm16k extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.ratio = sampleRate / (o.targetRate || 16000);
    this.frame = Math.round((o.targetRate || 16000) * (o.frameMs || 100) / 1000);
    this.newFrame();
    this.acc = 0; this.cnt = 0; this.pos = 0; this.last = 0;
    this.stopped = false;
    this.port.onmessage = (e) => this.onFlush(e);
  }
  // "flush": post the partial frame held (with last: true, even when
  // empty) and stop; Stop uses it so the end of the speech is sent too.
  onFlush(e) {
    if (e.data !== "flush" || this.stopped) return;
    this.stopped = true;
    const n = this.n;
    const pcm = this.buf.slice(0, n * 2);
    const rms = n > 0 ? Math.sqrt(this.sumsq / n) : 0;
    this.port.postMessage({ pcm: n > 0 ? pcm : null, rms: rms, last: true }, n > 0 ? [pcm] : []);
  }
  newFrame() {
    this.buf = new ArrayBuffer(this.frame * 2);
    this.view = new DataView(this.buf);
    this.n = 0; this.sumsq = 0;
  }
  emit(v) {
    if (v > 1) v = 1; else if (v < -1) v = -1;
    this.sumsq += v * v;
    this.view.setInt16(this.n * 2, Math.round(v < 0 ? v * 32768 : v * 32767), true);
    this.n++;
    if (this.n === this.frame) {
      const rms = Math.sqrt(this.sumsq / this.frame);
      this.port.postMessage({ pcm: this.buf, rms: rms }, [this.buf]);
      this.newFrame();
    }
  }
  process(inputs) {
    if (this.stopped) return false;
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const chans = input.length, len = input[0].length;
    for (let i = 0; i < len; i++) {
      let s = 0;
      for (let c = 0; c < chans; c++) s += input[c][i];
      s /= chans;
      this.acc += s; this.cnt++; this.pos += 1;
      while (this.pos >= this.ratio) {
        this.pos -= this.ratio;
        if (this.cnt > 0) { this.last = this.acc / this.cnt; this.acc = 0; this.cnt = 0; }
        this.emit(this.last);
      }
    }
    return true;
  }
}
registerProcessor("wssd-pcm16k", WssdPcm16k);
`;

  const mic = {
    running: false,
    stopping: false,
    // Set while stopping: the worklet flushed / a reply arrived / the socket closed.
    onflushed: null,
    onreply: null,
    ondrainclose: null,
    stream: null,
    ctx: null,
    node: null,
    workletUrl: null,
    bytes: 0,
    frames: 0,
    bytesIn: 0,
    texts: 0,
    dropped: 0,
    maxLevel: 0,
    conn: null,
  };

  function micMessage(kind, text) {
    const el = $("mic-message");
    if (!kind) {
      el.hidden = true;
      el.textContent = "";
      el.dataset.kind = "";
      return;
    }
    el.hidden = false;
    el.dataset.kind = kind;
    el.textContent = text;
  }

  function micLevel(rms) {
    const el = $("mic-level");
    el.setAttribute("aria-valuenow", rms.toFixed(4));
    if (rms > mic.maxLevel) {
      mic.maxLevel = rms;
      el.dataset.max = rms.toFixed(4);
    }
    // dBFS from -60 to 0 mapped onto the bar; the colour scale stays fixed
    // to the whole meter (green, then amber and red near full scale).
    const db = rms > 0 ? 20 * Math.log10(rms) : -Infinity;
    const pct = Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
    const bar = $("mic-level-bar");
    bar.style.width = pct.toFixed(1) + "%";
    bar.style.backgroundSize = (10000 / Math.max(pct, 1)).toFixed(1) + "% 100%";
    $("mic-level-db").textContent = db > -100 ? db.toFixed(0) + " dB" : "– dB";
  }

  function micCounters() {
    setCounter($("mic-bytes"), mic.bytes);
    setCounter($("mic-frames"), mic.frames);
    setCounter($("mic-bytes-in"), mic.bytesIn);
    setCounter($("mic-text-count"), mic.texts);
    setCounter($("mic-dropped"), mic.dropped);
  }

  mic.conn = new Conn({
    status: $("mic-status"),
    route: () => $("mic-route").value.trim() || DEFAULT_ROUTES.mic,
    onmessage: (ev) => {
      if (typeof ev.data === "string") {
        mic.texts += 1;
        const li = document.createElement("li");
        li.className = "in";
        const time = document.createElement("time");
        time.className = "time";
        time.textContent = fmtTime();
        const span = document.createElement("span");
        span.className = "text";
        span.textContent = ev.data;
        li.append(time, span);
        $("mic-replies").prepend(li);
        trim($("mic-replies"), 200, true);
      } else {
        mic.bytesIn += ev.data.byteLength;
      }
      micCounters();
      if (mic.onreply) mic.onreply();
    },
    onclose: () => {
      if (mic.ondrainclose) mic.ondrainclose();
      return mic.running;
    },
  });

  /** busy: capturing or stopping (Start disabled); stoppable: Stop enabled. */
  function micSetRunning(on) {
    mic.running = on;
    const busy = on || mic.stopping;
    $("mic-start").disabled = busy;
    $("mic-stop").disabled = !on;
    $("mic-route").disabled = busy;
    $("mic-end").disabled = busy;
    $("mic-processing").disabled = busy;
  }

  /** Waits for the last replies after Stop (see DRAIN_QUIET_MS). */
  function micDrain() {
    return new Promise((resolve) => {
      let quiet = null;
      const done = () => {
        clearTimeout(quiet);
        clearTimeout(cap);
        mic.onreply = mic.ondrainclose = null;
        resolve();
      };
      const cap = setTimeout(done, DRAIN_MAX_MS);
      const rearm = () => {
        clearTimeout(quiet);
        quiet = setTimeout(done, DRAIN_QUIET_MS);
      };
      mic.onreply = rearm;
      mic.ondrainclose = done;
      rearm();
    });
  }

  async function micStart() {
    micMessage(null);
    if (!window.isSecureContext) {
      micMessage(
        "insecure",
        "the microphone needs https://; open https://" + location.hostname + "/ instead (on wssd's TLS port) — browsers give the microphone only to secure pages.",
      );
      return;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      micMessage("unavailable", "this browser offers no microphone access (navigator.mediaDevices.getUserMedia is missing).");
      return;
    }
    if (!window.AudioWorkletNode) {
      micMessage("unavailable", "this browser has no AudioWorklet, which the page needs to convert the audio.");
      return;
    }
    micSetRunning(true);
    mic.bytes = mic.frames = mic.bytesIn = mic.texts = mic.dropped = 0;
    mic.maxLevel = 0;
    $("mic-level").dataset.max = "0";
    micCounters();
    let stream;
    try {
      // Raw audio by default: recognizers are trained on it, and the
      // browser's voice processing (auto gain above all) changes levels.
      const processing = $("mic-processing").checked;
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing },
        video: false,
      });
    } catch (e) {
      micSetRunning(false);
      if (e.name === "NotAllowedError" || e.name === "SecurityError") {
        micMessage("denied", "microphone access was refused (" + e.name + "): allow the microphone for this site in the browser's settings, then press Start again.");
      } else if (e.name === "NotFoundError" || e.name === "OverconstrainedError") {
        micMessage("unavailable", "no microphone was found (" + e.name + "): plug one in, then press Start again.");
      } else if (e.name === "NotReadableError") {
        micMessage("unavailable", "the microphone is in use by another program or could not be read (" + e.name + ").");
      } else {
        micMessage("error", "could not open the microphone: " + e.name + ": " + e.message);
      }
      return;
    }
    if (!mic.running) {
      // Stopped while the permission prompt was up.
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    mic.stream = stream;
    // Connect while the audio graph is set up, so the first frames find the socket open.
    mic.conn.open();
    try {
      const ctx = new AudioContext();
      mic.ctx = ctx;
      if (!mic.workletUrl) mic.workletUrl = URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" }));
      await ctx.audioWorklet.addModule(mic.workletUrl);
      if (!mic.running) return;
      const src = ctx.createMediaStreamSource(stream);
      const node = new AudioWorkletNode(ctx, "wssd-pcm16k", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        channelCount: 1,
        channelCountMode: "explicit",
        channelInterpretation: "speakers",
        processorOptions: { targetRate: TARGET_RATE, frameMs: FRAME_MS },
      });
      // A silent sink keeps the graph pulling the worklet.
      const sink = ctx.createGain();
      sink.gain.value = 0;
      src.connect(node);
      node.connect(sink);
      sink.connect(ctx.destination);
      node.port.onmessage = (ev) => {
        const { pcm, rms, last } = ev.data;
        if (pcm) {
          micLevel(rms);
          if (mic.conn.send(pcm)) {
            mic.bytes += pcm.byteLength;
            mic.frames += 1;
          } else {
            mic.dropped += 1;
          }
          micCounters();
        }
        if (last && mic.onflushed) mic.onflushed();
      };
      mic.node = node;
      $("mic-format").textContent =
        "captured at " + ctx.sampleRate + " Hz, sent as 16 kHz mono 16-bit little-endian PCM in " + FRAME_MS + " ms frames (" + (TARGET_RATE * FRAME_MS / 1000) * 2 + " bytes)";
      await ctx.resume();
      stream.getAudioTracks()[0].addEventListener("ended", () => {
        if (mic.running) {
          micMessage("error", "the microphone stopped (unplugged or access revoked).");
          micStop();
        }
      });
    } catch (e) {
      micMessage("error", "could not start audio processing: " + e.name + ": " + e.message);
      micStop();
    }
  }

  /**
   * Stops capturing without losing the end: the worklet sends the partial
   * frame it holds, the end message (if any) follows the last frame, and the
   * socket stays open for the last replies (see micDrain) before it closes.
   */
  async function micStop() {
    if (mic.stopping) return;
    mic.stopping = true;
    micSetRunning(false); // no reconnection from here on
    try {
      const node = mic.node;
      mic.node = null;
      if (node) {
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, 500);
          mic.onflushed = () => {
            clearTimeout(timer);
            resolve();
          };
          node.port.postMessage("flush");
        });
        mic.onflushed = null;
        node.port.onmessage = null;
        node.disconnect();
      }
      if (mic.stream) {
        mic.stream.getTracks().forEach((t) => t.stop());
        mic.stream = null;
      }
      if (mic.ctx) {
        mic.ctx.close().catch(() => {});
        mic.ctx = null;
      }
      micLevel(0);
      if (mic.conn.isOpen()) {
        const end = $("mic-end").value;
        if (end !== "") mic.conn.send(end);
        mic.conn.setStatus(
          "closing",
          "finishing: " + (end !== "" ? "end message sent; " : "") + "waiting for the last replies (up to " + DRAIN_MAX_MS / 1000 + " s) …",
          "wait",
        );
        await micDrain();
      }
    } finally {
      mic.stopping = false;
      micSetRunning(false);
      // Everything handed to the socket goes out before the close frame.
      mic.conn.close("stopped; " + mic.bytes.toLocaleString("en-US") + " bytes sent");
    }
  }

  $("mic-start").addEventListener("click", () => {
    micStart();
  });
  $("mic-stop").addEventListener("click", () => micStop());

  if (!window.isSecureContext) {
    micMessage(
      "insecure",
      "the microphone needs https://; open https://" + location.hostname + "/ instead (on wssd's TLS port) — browsers give the microphone only to secure pages.",
    );
  }

  // --- access token -----------------------------------------------------------

  function tokenShowState() {
    const set = accessToken() !== "";
    const el = $("auth-token-state");
    el.dataset.set = set ? "true" : "false";
    el.textContent = set
      ? "token set: sent as access_token with every new socket"
      : "no token: sockets open without one";
    el.className = set ? "hint ok-text" : "hint";
  }
  $("auth-token-form").addEventListener("submit", (ev) => ev.preventDefault());
  $("auth-token").addEventListener("input", () => {
    try {
      localStorage.setItem("wssd.token", accessToken());
    } catch (e) {
      // storage may be off
    }
    tokenShowState();
  });
  $("auth-token-show").addEventListener("click", () => {
    const field = $("auth-token");
    const show = field.type === "password";
    field.type = show ? "text" : "password";
    $("auth-token-show").setAttribute("aria-pressed", show ? "true" : "false");
    $("auth-token-show").textContent = show ? "Hide" : "Show";
  });
  try {
    $("auth-token").value = localStorage.getItem("wssd.token") || "";
  } catch (e) {
    // storage may be off
  }
  tokenShowState();

  // --- start ---------------------------------------------------------------

  const first = location.hash.slice(1);
  showPanel(PANELS.includes(first) ? first : "chat");

  window.wssd = { socketUrl: socketUrl, withToken: withToken, chat: chat, echo: echo, mic: mic, showPanel: showPanel };
})();
