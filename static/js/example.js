// A runnable example of the prose (a code block marked `runnable`): a Run button and its own
// output, in the lesson's kernel. Nothing is checked or counted; the server traces the run.
import {OutputArea} from "./outputs.js";

export class ExampleCell {
  constructor(section, page) {
    this.section = section;
    this.page = page;
    this.id = section.dataset.example;
    this.runId = null;
    const bar = document.createElement("div");
    bar.className = "example-toolbar";
    this.runButton = document.createElement("button");
    Object.assign(this.runButton, {type: "button", className: "btn-run", textContent: "Run"});
    this.runButton.dataset.action = "run";
    this.runButton.title = "Run this example in the lesson's kernel";
    this.runButton.addEventListener("click", () => this.run());
    this.state = document.createElement("span");
    this.state.className = "cell-state";
    this.state.setAttribute("aria-live", "polite");
    bar.append(this.runButton, " ", this.state);
    this.outputNode = document.createElement("div");
    this.outputNode.className = "output";
    this.outputNode.setAttribute("role", "log");
    this.outputNode.setAttribute("aria-label", `Output of example ${this.id}`);
    this.outputs = new OutputArea(this.outputNode);
    section.append(bar, this.outputNode);
  }

  run() {
    if (this.runId) return;
    this.runId = this.page.newRunId(this);
    this.outputs.clear();
    this.busy(true, this.page.connected ? "Waiting for the kernel…" : "Waiting for the connection…");
    this.page.send({type: "example", run: this.runId, example: this.id});
  }

  // --- what the server says (the same calls a Cell gets) ---

  queued(position) { this.state.textContent = `Waiting for a free kernel: number ${position} in the queue`; }

  started() { this.state.textContent = "Running…"; }

  output(output) { this.outputs.add(output); }

  inputRequest() {}   // examples take no input(): the kernel tells the code so

  finished(msg) {
    if (msg.status === "limit" || msg.status === "died") this.outputs.note(msg.message || "Stopped.");
    this.done();
  }

  failed(message) {
    this.outputs.note(message);
    this.done();
  }

  lost() {
    if (this.runId) this.failed("The connection dropped during this run, so its result is unknown. Run it again.");
  }

  busy(running, text) {
    this.section.classList.toggle("running", running);
    this.runButton.disabled = running;
    this.state.textContent = text || "";
  }

  done() {
    this.page.forgetRun(this.runId);
    this.runId = null;
    this.busy(false);
  }
}
