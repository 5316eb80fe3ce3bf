// One exercise on the page: editor, buttons, input box, result banner, outputs.
// It talks to the page (run ids, the socket) only through the `page` it is given.
import {createEditor} from "../editor/dist/editor.js";
import {OutputArea} from "./outputs.js";

const LIMIT_WORDS = {
  timeout: "Stopped: the run took longer than the time limit.",
  output: "Stopped: your program printed more output than is allowed.",
  memory: "Stopped: your program used more memory than is allowed.",
  pids: "Stopped: your program started too many processes.",
  disk: "Stopped: your program filled the disk space for files.",
};

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function ordinal(n) {
  const tail = n % 100 >= 11 && n % 100 <= 13 ? "th" : ({1: "st", 2: "nd", 3: "rd"}[n % 10] || "th");
  return `${n}${tail}`;
}

// What the banner says about a finished run: {kind: passed|failed|stopped, text}.
export function verdictBanner(msg) {
  const verdict = msg.verdict || {passed: false, message: ""};
  if (msg.status === "limit" || msg.status === "died") {
    const stopped = msg.message || LIMIT_WORDS[msg.limit] || "Stopped: the kernel ended the run.";
    return {kind: "stopped", text: stopped};
  }
  if (verdict.passed) return {kind: "passed", text: `✓ Passed${verdict.message ? `: ${verdict.message}` : ""}`};
  return {kind: "failed", text: `✗ Not yet: ${verdict.message || msg.message || "the check did not pass."}`};
}

// What the badge says: the latest run's state, and that an earlier one passed if it did.
export function badgeWords(status, latest) {
  const before = status === "passed" ? " (passed before)" : "";
  if (latest === "stopped") return {kind: "stopped", text: `stopped${before}`};
  if (latest === "failed" || latest === "error") return {kind: "failed", text: `not passed${before}`};
  if (latest === "passed" || status === "passed") return {kind: "passed", text: "✓ passed"};
  return status === "failed" ? {kind: "failed", text: "not passed yet"} : {kind: "new", text: ""};
}

export class Cell {
  constructor(section, page, saved = {}) {
    this.section = section;
    this.page = page;
    this.id = section.dataset.exercise;
    this.runId = null;
    const pre = section.querySelector("pre.starter");
    this.starter = pre ? pre.textContent.replace(/\n$/, "") : "";
    this.build(pre, saved);
  }

  build(pre, saved) {
    const id = this.id;
    let heading = this.section.querySelector("h3");
    if (!heading) { heading = el("h3", {}, id); this.section.prepend(heading); }
    if (!heading.id) heading.id = `exercise-${id}`;
    this.section.setAttribute("aria-labelledby", heading.id);
    this.badge = el("span", {class: "exercise-badge"});
    heading.append(" ", this.badge);
    const editorBox = el("div", {class: "editor"});
    if (pre) pre.replaceWith(editorBox); else heading.after(editorBox);
    this.submitted = saved.code;   // the server keeps the last submitted code of each exercise
    this.editor = createEditor(editorBox, {
      doc: this.page.drafts.get(id) ?? saved.code ?? this.starter,
      language: this.section.dataset.language || this.page.mode,
      label: `Code for exercise ${heading.textContent.trim()}`,
      onRun: () => this.run(),
      // What a reload would show anyway is no draft: the last submitted code, else the starter.
      onChange: (text) => this.page.drafts.save(id, text, this.submitted ?? this.starter),
    });
    const bar = el("div", {class: "cell-toolbar", role: "group", "aria-label": `Exercise ${id}`});
    this.runButton = this.button(bar, "Run", "run", () => this.run(), "Run (Shift-Enter)");
    this.interruptButton = this.button(bar, "Interrupt", "interrupt", () => this.page.interrupt());
    this.button(bar, "Restart kernel", "restart", () => this.page.restart());
    this.button(bar, "Reset to starter", "reset", () => this.reset());
    this.state = el("span", {class: "cell-state", "aria-live": "polite"});
    bar.append(this.state, el("span", {class: "cell-hint"}, "Shift-Enter runs · Esc then Tab leaves the editor"));
    this.banner = el("div", {class: "result-banner", role: "status", "aria-live": "polite"});
    this.banner.hidden = true;
    this.stdin = this.buildInput();
    this.outputNode = el("div", {class: "output", role: "log", "aria-live": "polite",
                                 "aria-label": `Output of exercise ${id}`});
    this.outputs = new OutputArea(this.outputNode);
    editorBox.after(bar, this.banner, this.stdin, this.outputNode);
    this.setStatus(saved.status, saved.attempts);
    this.interruptButton.disabled = true;
    this.buildHints();
    this.attempts = saved.attempts || 0;
    this.revealAfter = Number(this.section.dataset.revealAfter || 0);
    if (this.revealAfter) this.buildSolution(saved.solution);
  }

  // Hints come one at a time, in order, each when the learner asks for the next.
  buildHints() {
    this.hints = [...this.section.querySelectorAll("details.hint")];
    if (!this.hints.length) return;
    for (const hint of this.hints) hint.hidden = true;
    this.shownHints = 0;
    this.hintButton = el("button", {type: "button", class: "btn-hint", "data-action": "hint"});
    this.hintButton.addEventListener("click", () => this.nextHint());
    this.hints[this.hints.length - 1].after(this.hintButton);
    this.labelHintButton();
  }

  nextHint() {
    const hint = this.hints[this.shownHints];
    if (!hint) return;
    this.shownHints += 1;
    hint.hidden = false;
    hint.open = true;
    this.labelHintButton();
  }

  labelHintButton() {
    const total = this.hints.length;
    this.hintButton.hidden = this.shownHints >= total;
    this.hintButton.textContent = total === 1 ? "Show a hint" : `Show hint ${this.shownHints + 1} of ${total}`;
  }

  // `reveal=N`: after N attempts the learner may ask for the solution (the server counts them).
  buildSolution(solution) {
    const bar = el("div", {class: "solution-bar"});
    this.solutionButton = el("button", {type: "button", class: "btn-solution", "data-action": "solution"},
                             "Show the solution");
    this.solutionButton.addEventListener("click", () => this.page.send({type: "solution", exercise: this.id}));
    this.solutionNote = el("span", {class: "solution-note", "aria-live": "polite"});
    bar.append(this.solutionButton, " ", this.solutionNote);
    this.solutionBox = el("details", {class: "solution", open: ""});
    this.solutionBox.hidden = true;
    this.outputNode.after(bar, this.solutionBox);
    if (solution) this.showSolution(solution); else this.updateSolutionButton();
  }

  updateSolutionButton() {
    if (!this.solutionButton || this.solutionShown) return;
    const left = this.revealAfter - this.attempts;
    this.solutionButton.disabled = left > 0;
    this.solutionNote.textContent = left > 0
      ? `It opens after ${this.revealAfter} attempt${this.revealAfter === 1 ? "" : "s"} (${left} more).` : "";
  }

  showSolution(code) {
    this.solutionShown = true;
    this.solutionBox.replaceChildren(el("summary", {}, "Solution"), el("pre", {class: "solution-code"}, code));
    this.solutionBox.hidden = false;
    this.solutionButton.hidden = true;
    this.solutionNote.textContent = "";
  }

  solution(msg) {
    if (msg.solution) this.showSolution(msg.solution);
    else if (this.solutionNote) this.solutionNote.textContent = msg.message || "";
  }

  button(bar, label, name, action, title) {
    const button = el("button", {type: "button", class: `btn-${name}`, "data-action": name}, label);
    if (title) button.title = title;
    button.addEventListener("click", action);
    bar.append(button);
    return button;
  }

  buildInput() {
    const form = el("form", {class: "stdin"});
    this.stdinLabel = el("label", {for: `stdin-${this.id}`});
    this.stdinField = el("input", {id: `stdin-${this.id}`, type: "text", autocomplete: "off"});
    form.append(this.stdinLabel, this.stdinField, el("button", {type: "submit"}, "Send"));
    form.hidden = true;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!this.runId) return;
      const value = this.stdinField.value;
      this.outputs.echoInput(value, this.stdinField.type === "password");
      this.page.send({type: "input", run: this.runId, value});
      form.hidden = true;
      this.stdinField.value = "";
      this.editor.focus();
    });
    return form;
  }

  // --- learner actions ---

  run() {
    if (this.runId) return;
    this.ranHere = true;   // from now on this page's own runs are newer than any restored one
    this.runId = this.page.newRunId(this);
    this.page.drafts.flush();
    this.outputs.clear();
    this.banner.hidden = true;
    this.busy(true, this.page.connected ? "Waiting for the kernel…" : "Waiting for the connection…");
    this.submitted = this.editor.getValue();
    this.page.drafts.save(this.id, this.submitted, this.starter);   // kept as a draft until the server has it
    this.page.drafts.flush();
    this.page.send({type: "run", run: this.runId, exercise: this.id, code: this.submitted});
  }

  reset() {
    this.editor.setValue(this.starter);
    this.editor.focus();
  }

  // --- what the server says ---

  queued(position) {
    this.state.textContent = `Waiting for a free kernel: ${ordinal(position)} in the queue`;
  }

  started() {
    this.state.textContent = "Running…";
  }

  output(output) {
    this.outputs.add(output);
  }

  inputRequest(prompt, password) {
    this.stdinLabel.textContent = prompt || "Input:";
    this.stdinField.type = password ? "password" : "text";
    this.stdin.hidden = false;
    this.state.textContent = "Waiting for your input";
    this.stdinField.focus();
  }

  finished(msg) {
    const {kind, text} = verdictBanner(msg);
    this.showBanner(kind, text);
    if (msg.verdict) {
      this.setStatus(msg.verdict.passed ? "passed" : "failed", undefined, kind);
      this.attempts += 1;    // each judged run is an attempt in the learner's progress
      this.updateSolutionButton();
    }
    this.done();
  }

  // The last run before this page was loaded, as it was shown then (outputs, banner, badge).
  restore(last) {
    if (this.runId || this.ranHere) return;
    this.outputs.clear();
    for (const output of last.outputs || []) this.outputs.add(output);
    if (last.cut) this.outputs.note("The output was longer; run the code again to see all of it.");
    const {kind, text} = verdictBanner(last);
    this.showBanner(kind, text);
    this.setStatus(undefined, undefined, kind);
  }

  failed(message) {
    this.showBanner("error", message);
    this.done();
  }

  // The socket dropped: a run already sent has an unknown fate.
  lost() {
    if (!this.runId) return;
    this.failed("The connection dropped during this run, so its result is unknown. Run it again.");
  }

  // --- display ---

  showBanner(kind, text) {
    this.banner.className = `result-banner result-${kind}`;
    this.banner.textContent = text;
    this.banner.hidden = false;
  }

  // `status`: passed once counts for ever (the progress); `latest`: how the latest run
  // ended (passed | failed | stopped), which is what the badge tells when known.
  setStatus(status, attempts, latest) {
    const passed = status === "passed" || this.section.dataset.status === "passed";
    this.section.dataset.status = passed ? "passed" : (status || this.section.dataset.status || "new");
    if (latest) this.section.dataset.latest = latest;
    const {text, kind} = badgeWords(this.section.dataset.status, this.section.dataset.latest);
    this.badge.textContent = text;
    this.badge.className = `exercise-badge badge-${kind}`;
    if (attempts) this.badge.title = `${attempts} attempt${attempts === 1 ? "" : "s"}`;
  }

  busy(running, text) {
    this.section.classList.toggle("running", running);
    this.runButton.disabled = running;
    this.interruptButton.disabled = !running;
    this.state.textContent = text || "";
  }

  done() {
    this.page.forgetRun(this.runId);
    this.runId = null;
    this.stdin.hidden = true;
    this.busy(false);
  }
}
