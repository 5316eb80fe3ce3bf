// The lesson page: mounts one Cell per exercise and shares one WebSocket
// (/lessons/<slug>/ws) between them. No framework, no inline script (CSP).
import {Cell} from "./cell.js";
import {Connection} from "./connection.js";
import {completeNote, isComplete} from "./complete.js";
import {draftStore} from "./drafts.js";
import {ExampleCell} from "./example.js";

const STATE_WORDS = {
  none: "not started (it starts on your first run)", connecting: "connecting…", starting: "starting", idle: "idle", busy: "busy",
  restarting: "restarting", dead: "dead", queued: "queued", reconnecting: "reconnecting…",
  closed: "disconnected",
};

function newId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function parseJson(text, fallback) {
  try { return text ? JSON.parse(text) : fallback; } catch { return fallback; }
}

class Page {
  constructor(article) {
    this.article = article;
    this.slug = article.dataset.lesson;
    this.kernel = article.dataset.kernel || "";
    this.mode = article.dataset.mode || this.kernel;
    this.runs = new Map();   // run id -> Cell
    this.begun = new Set();  // ids of our runs the page shows as running
    this.cells = new Map();  // exercise id -> Cell
    this.connected = false;
    this.kernelSession = null;  // the server's tag of our kernel: told back in each hello
    this.progressNode = article.querySelector(".lesson-progress");
    this.drafts = draftStore(this.slug);
    this.buildStatusBar();
    const saved = parseJson(article.dataset.exercises, {});
    for (const section of article.querySelectorAll("section.exercise[data-exercise]")) {
      const cell = new Cell(section, this, saved[section.dataset.exercise] || {});
      this.cells.set(cell.id, cell);
    }
    this.examples = [...article.querySelectorAll("section.example[data-example]")]
      .map((section) => new ExampleCell(section, this));
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.connection = new Connection(`${scheme}//${location.host}/lessons/${encodeURIComponent(this.slug)}/ws`, {
      open: () => this.opened(),
      message: (msg) => this.dispatch(msg),
      lost: () => this.lost(),
      retrying: (delay) => this.setKernel("reconnecting", `trying again in ${Math.ceil(delay / 1000)} s`),
      closed: (code, reason) => this.setKernel("closed", reason || "The server closed the connection."),
    });
    this.setKernel("connecting", null);
    if (this.progressNode && isComplete(this.progressNode.dataset)) this.showComplete(null);
    this.connection.connect();
    window.addEventListener("pagehide", () => { this.drafts.flush(); this.connection.close(); });
  }

  buildStatusBar() {
    const bar = document.createElement("div");
    bar.className = "kernel-bar";
    bar.setAttribute("role", "status");
    bar.setAttribute("aria-live", "polite");
    const label = document.createElement("span");
    label.className = "kernel-name";
    label.textContent = `Kernel${this.kernel ? ` (${this.kernel})` : ""}:`;
    this.kernelDot = document.createElement("span");
    this.kernelDot.className = "kernel-dot";
    this.kernelDot.setAttribute("aria-hidden", "true");
    this.kernelState = document.createElement("span");
    this.kernelState.className = "kernel-state";
    this.kernelMessage = document.createElement("span");
    this.kernelMessage.className = "kernel-message";
    bar.append(label, " ", this.kernelDot, this.kernelState, " ", this.kernelMessage);
    const body = this.article.querySelector(".lesson-body");
    (this.progressNode || body || this.article.firstElementChild).after(bar);
    this.statusBar = bar;
  }

  setKernel(state, message) {
    this.statusBar.dataset.state = state;
    this.kernelState.textContent = STATE_WORDS[state] || state;
    this.kernelMessage.textContent = message || "";
  }

  // --- what cells ask for ---

  newRunId(cell) {
    const id = newId();
    this.runs.set(id, cell);
    return id;
  }

  forgetRun(id) {
    this.runs.delete(id);
    this.begun.delete(id);
  }

  send(msg) {
    this.connection.send(msg);
  }

  interrupt() {
    this.send({type: "interrupt"});
  }

  restart() {
    this.send({type: "restart"});
  }

  // --- what the server says ---

  dispatch(msg) {
    const cell = msg.run ? this.runs.get(msg.run) : undefined;
    switch (msg.type) {
      case "kernel":
        // A new process (or a closed kernel) says our variables are gone; forget the old tag.
        if (msg.session || msg.restarted) this.kernelSession = msg.session || null;
        return this.setKernel(msg.state, msg.message);
      case "queued":
        this.setKernel("queued", `position ${msg.position} in the queue`);
        for (const waiting of this.runs.values()) waiting.queued(msg.position);
        return undefined;
      case "started": return this.began(msg, cell);
      case "output":
        this.began(msg, cell);
        return cell && cell.output(msg.output);
      case "input_request":
        this.began(msg, cell);
        return cell && cell.inputRequest(msg.prompt, msg.password);
      case "result":
        if (cell) cell.finished(msg);
        if (msg.progress) this.setProgress(msg.progress.passed, msg.progress.total);
        if (msg.progress && isComplete(msg.progress) && msg.verdict && msg.verdict.passed) {
          this.showComplete(cell);
        }
        return undefined;
      case "restore":
        for (const [id, last] of Object.entries(msg.exercises || {})) {
          const restored = this.cells.get(id);
          if (restored) restored.restore(last);
        }
        return undefined;
      case "solution": {
        const asked = this.cells.get(msg.exercise);
        return asked && asked.solution(msg);
      }
      case "error": return this.error(msg, cell);
      default: return undefined;
    }
  }

  // The server says "started" only for a run that lasts: a faster run's first output (or
  // input request) is its start. Either way the kernel is busy with it from then on.
  began(msg, cell) {
    if (msg.session) this.kernelSession = msg.session;
    if (!cell || this.begun.has(msg.run)) return;
    this.begun.add(msg.run);
    this.setKernel("busy", null);
    cell.started();
  }

  error(msg, cell) {
    const retry = msg.retry_after ? ` Try again in ${msg.retry_after} s.` : "";
    const text = `${msg.message || "The server could not do that."}${retry}`;
    if (cell) cell.failed(text);
    else this.kernelMessage.textContent = text;
  }

  // Before anything queued: the hello names the kernel we had, so the server can say whether
  // it still holds it (behind a load balancer, a reconnect may reach another process).
  opened() {
    this.connected = true;
    this.setKernel("connecting", null);
    if (this.kernelSession) this.send({type: "hello", session: this.kernelSession});
  }

  lost() {
    this.connected = false;
    for (const cell of new Set(this.runs.values())) cell.lost();
    this.setKernel("reconnecting", null);
  }

  // `cell`: the exercise whose run completed the lesson just now (the note goes below it);
  // null when the page opened on a completed lesson (the note goes at the top).
  showComplete(cell) {
    if (this.completeNode) {
      if (!cell) return;
      this.completeNode.remove();
    }
    const {done, link, href} = completeNote(this.progressNode ? this.progressNode.dataset.total : this.cells.size,
                                            this.article.querySelector("nav.next a"));
    const box = document.createElement("section");
    box.className = `lesson-complete${cell ? " just-now" : ""}`;
    box.setAttribute("role", "status");
    box.setAttribute("aria-label", "Lesson complete");
    const heading = document.createElement("h2");
    heading.textContent = cell ? "🎉 Lesson complete!" : "✓ Lesson complete";
    const text = document.createElement("p");
    text.textContent = done;
    const next = document.createElement("a");
    next.className = "lesson-next";
    next.href = href;
    next.textContent = link;
    box.append(heading, text, next);
    if (cell) cell.section.after(box); else this.statusBar.after(box);
    this.completeNode = box;
  }

  setProgress(passed, total) {
    if (!this.progressNode) return;
    this.progressNode.textContent = `${passed} of ${total} exercises passed`;
    this.progressNode.dataset.passed = passed;
    this.progressNode.dataset.total = total;
  }
}

function main() {
  const article = document.querySelector("article.lesson[data-lesson]");
  if (!article || !article.querySelector("section.exercise[data-exercise], section.example[data-example]")) return;
  const page = new Page(article);
  // A hook for tests and the curious: the editors by exercise id.
  window.lessonserver = {
    page,
    editors: Object.fromEntries([...page.cells].map(([id, cell]) => [id, cell.editor])),
  };
}

main();
