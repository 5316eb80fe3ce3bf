// Terminal colour codes (IPython tracebacks, `ls --color`) mapped to CSS classes;
// every other escape sequence is dropped. Text only ever goes in through text nodes.
const ESCAPES = /\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[([0-9;?]*)([A-Za-z])|\x1b[()][A-Za-z0-9]|\x1b./g;
const COLOURS = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];

// The style after one SGR ("m") sequence: {fg, bg, bold} -> new {fg, bg, bold}.
export function applySgr(style, params) {
  const codes = params === "" ? [0] : params.split(";").map((p) => Number(p) || 0);
  let {fg, bg, bold} = style;
  for (let i = 0; i < codes.length; i++) {
    const code = codes[i];
    if (code === 0) { fg = bg = null; bold = false; }
    else if (code === 1) bold = true;
    else if (code === 22) bold = false;
    else if (code >= 30 && code <= 37) fg = COLOURS[code - 30];
    else if (code >= 90 && code <= 97) fg = COLOURS[code - 90];
    else if (code === 39) fg = null;
    else if (code >= 40 && code <= 47) bg = COLOURS[code - 40];
    else if (code >= 100 && code <= 107) bg = COLOURS[code - 100];
    else if (code === 49) bg = null;
    else if (code === 38 || code === 48) i += codes[i + 1] === 5 ? 2 : 4;  // 256/true colour: skip
  }
  return {fg, bg, bold};
}

function classes(style) {
  return [style.fg && `ansi-${style.fg}`, style.bg && `ansi-bg-${style.bg}`, style.bold && "ansi-bold"]
    .filter(Boolean).join(" ");
}

// Pieces of text with their classes, e.g. [{text: "Error", cls: "ansi-red ansi-bold"}].
export function parseAnsi(text, style = {fg: null, bg: null, bold: false}) {
  const pieces = [];
  let last = 0;
  for (const match of text.matchAll(ESCAPES)) {
    if (match.index > last) pieces.push({text: text.slice(last, match.index), cls: classes(style)});
    if (match[2] === "m") style = applySgr(style, match[1]);
    last = match.index + match[0].length;
  }
  if (last < text.length) pieces.push({text: text.slice(last), cls: classes(style)});
  return {pieces, style};
}

export function stripAnsi(text) {
  return text.replace(ESCAPES, "");
}

export function ansiFragment(text) {
  const fragment = document.createDocumentFragment();
  for (const {text: piece, cls} of parseAnsi(text).pieces) {
    if (!cls) { fragment.append(piece); continue; }
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = piece;
    fragment.append(span);
  }
  return fragment;
}
