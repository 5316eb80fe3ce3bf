// One exercise's output area. Kernel output is untrusted: text goes in as text
// nodes, images as data: URLs, HTML only inside an iframe with sandbox="" (no
// scripts, opaque origin) and a CSP that blocks every fetch.
import {ansiFragment, stripAnsi} from "./ansi.js";

const IMAGES = ["image/png", "image/jpeg", "image/gif", "image/svg+xml"];
const FRAME_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function joined(value) {
  return Array.isArray(value) ? value.join("") : String(value ?? "");
}

function image(mime, value) {
  const img = el("img", "output-image");
  const body = joined(value);
  img.src = mime === "image/svg+xml"
    ? `data:image/svg+xml;charset=utf-8,${encodeURIComponent(body)}`
    : `data:${mime};base64,${body.replace(/\s+/g, "")}`;
  img.alt = "Plot or image produced by your code";
  return img;
}

function htmlFrame(html, plain) {
  const frame = el("iframe", "output-html");
  frame.setAttribute("sandbox", "");
  frame.setAttribute("referrerpolicy", "no-referrer");
  frame.title = "HTML output of your code";
  // The frame cannot be measured from here (opaque origin): size it from the plain text.
  const lines = plain ? plain.split("\n").length : 6;
  frame.style.height = `${Math.min(30, Math.max(4, lines * 1.5 + 1.5))}em`;
  frame.srcdoc = `<!doctype html><meta http-equiv="Content-Security-Policy" content="${FRAME_CSP}">` +
    `<style>body{font:14px system-ui,sans-serif;margin:.5em}table{border-collapse:collapse}` +
    `td,th{border:1px solid #ccc;padding:.2em .5em}</style>${html}`;
  return frame;
}

// The richest safe view of a mime bundle: image, sandboxed HTML, else plain text.
export function renderBundle(data) {
  const plain = data["text/plain"] !== undefined ? stripAnsi(joined(data["text/plain"])) : undefined;
  const mime = IMAGES.find((m) => data[m] !== undefined);
  if (mime) return image(mime, data[mime]);
  if (data["text/html"] !== undefined) return htmlFrame(joined(data["text/html"]), plain);
  if (plain !== undefined) return el("pre", "output-plain", plain);
  if (data["application/json"] !== undefined) {
    return el("pre", "output-plain", JSON.stringify(data["application/json"], null, 2));
  }
  return el("pre", "output-plain output-unknown", `[output of type ${Object.keys(data).join(", ")}]`);
}

// What a terminal would show: on each line, text after a carriage return replaces what was before.
export function overwriteLines(text) {
  return text.replace(/\r\n/g, "\n").split("\n")
    .map((line) => line.split("\r").filter(Boolean).pop() ?? "")
    .join("\n");
}

export class OutputArea {
  constructor(node) {
    this.node = node;
  }

  clear() {
    this.node.replaceChildren();
  }

  add(output) {
    switch (output.output_type) {
      case "stream": return this.stream(output.name === "stderr" ? "stderr" : "stdout", output.text ?? "");
      case "error": return this.error(output);
      case "execute_result":
      case "display_data": return this.display(output);
      case "clear_output": return this.clear();
      default: return undefined;
    }
  }

  // Consecutive chunks of one stream share a <pre>, so lines read as one text.
  stream(name, text) {
    let pre = this.node.lastElementChild;
    if (!pre || !pre.classList.contains(`stream-${name}`)) {
      pre = el("pre", `stream stream-${name}`);
      pre.raw = "";
      this.node.append(pre);
    }
    pre.raw += text;
    // A lone \r (progress bars) rewrites its line: redraw the whole text only then.
    if (/\r(?!\n)/.test(pre.raw)) pre.replaceChildren(ansiFragment(overwriteLines(pre.raw)));
    else pre.append(ansiFragment(text));
  }

  error({ename, evalue, traceback}) {
    const text = traceback && traceback.length ? traceback.join("\n") : `${ename}: ${evalue}`;
    const pre = el("pre", "output-error");
    pre.append(ansiFragment(text));
    this.node.append(pre);
  }

  display({data = {}, display_id: displayId}) {
    const view = el("div", "output-display");
    view.append(renderBundle(data));
    if (displayId) {
      view.dataset.displayId = displayId;
      const old = [...this.node.children].find((child) => child.dataset.displayId === displayId);
      if (old) { old.replaceWith(view); return; }
    }
    this.node.append(view);
  }

  // What the learner typed, after the prompt the kernel already printed.
  echoInput(value, password) {
    const shown = `${password ? "••••" : value}\n`;
    this.stream("stdout", "");
    const pre = this.node.lastElementChild;
    pre.raw += shown;
    pre.append(el("span", "stdin-echo", shown));
  }

  note(text) {
    this.node.append(el("p", "output-note", text));
  }
}
