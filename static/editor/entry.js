// The one entry point esbuild bundles into dist/editor.js: CodeMirror 6 with the
// three languages lessons use, behind a tiny API so notebook.js never imports npm code.
import {EditorState} from "@codemirror/state";
import {EditorView, keymap, lineNumbers, drawSelection, highlightActiveLine,
        highlightActiveLineGutter} from "@codemirror/view";
import {defaultKeymap, history, historyKeymap, indentWithTab} from "@codemirror/commands";
import {bracketMatching, defaultHighlightStyle, indentOnInput, StreamLanguage,
        syntaxHighlighting} from "@codemirror/language";
import {closeBrackets, closeBracketsKeymap} from "@codemirror/autocomplete";
import {python} from "@codemirror/lang-python";
import {sql, SQLite} from "@codemirror/lang-sql";
import {shell} from "@codemirror/legacy-modes/mode/shell";

const LANGUAGES = {
  python: () => python(),
  sql: () => sql({dialect: SQLite}),
  shell: () => StreamLanguage.define(shell),
};
LANGUAGES.bash = LANGUAGES.shell;

// createEditor(parent, {doc, language, label, onRun, onChange}) -> {view, getValue, setValue, focus}
// onRun is called for Shift-Enter and Ctrl/Cmd-Enter; Tab indents (Escape then Tab leaves);
// onChange(text) after every edit.
export function createEditor(parent, {doc = "", language = "python", label = "Code",
                                      onRun = () => {}, onChange = () => {}} = {}) {
  const run = () => { onRun(); return true; };
  const lang = LANGUAGES[language];
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        lineNumbers(), highlightActiveLineGutter(), history(), drawSelection(),
        indentOnInput(), bracketMatching(), closeBrackets(), highlightActiveLine(),
        syntaxHighlighting(defaultHighlightStyle, {fallback: true}),
        keymap.of([{key: "Shift-Enter", run}, {key: "Mod-Enter", run},
                   ...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap, indentWithTab]),
        EditorView.contentAttributes.of({"aria-label": label}),
        EditorView.updateListener.of((update) => {
          if (update.docChanged) onChange(update.state.doc.toString());
        }),
        ...(lang ? [lang()] : []),
      ],
    }),
  });
  return {
    view,
    getValue: () => view.state.doc.toString(),
    setValue: (text) => view.dispatch({changes: {from: 0, to: view.state.doc.length, insert: text}}),
    focus: () => view.focus(),
  };
}
