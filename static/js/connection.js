// The page's one WebSocket: JSON frames in and out, reconnect with capped,
// jittered exponential backoff. Frames sent while connecting wait in a queue.
const MAX_DELAY_MS = 15000;

export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(MAX_DELAY_MS, 500 * 2 ** attempt);
  return Math.round(base * (0.5 + random() / 2));
}

// Close codes after which reconnecting cannot help (policy, no access).
function fatal(code) {
  return code === 1008 || (code >= 4000 && code < 5000);
}

export class Connection {
  // handlers: {open(), message(msg), lost() (an open socket dropped), retrying(delayMs),
  // closed(code, reason) (no more retries)}
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.queue = [];
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.stopped = false;
  }

  get open() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  connect() {
    const socket = new WebSocket(this.url);
    let opened = false;
    this.socket = socket;
    socket.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.handlers.open();
      for (const frame of this.queue.splice(0)) socket.send(frame);
    };
    socket.onmessage = (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      this.handlers.message(msg);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (opened) this.handlers.lost();  // a failed attempt loses nothing
      if (this.stopped) return;
      if (fatal(event.code)) { this.handlers.closed(event.code, event.reason); return; }
      const delay = backoffDelay(this.attempt++);
      this.handlers.retrying(delay);
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  send(msg) {
    const frame = JSON.stringify(msg);
    if (this.open) this.socket.send(frame);
    else this.queue.push(frame);
  }

  // Drop what was waiting to be sent (e.g. runs the learner gave up on while offline).
  discardQueued(predicate) {
    this.queue = this.queue.filter((frame) => !predicate(JSON.parse(frame)));
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, "page closed");
  }
}
