// Edits survive a reload: one localStorage entry per lesson and exercise, written
// shortly after typing stops, on Run, and when the page goes away. Storage may be
// off (private mode): then nothing is kept.
const DELAY_MS = 300;

export function draftStore(slug, storage = globalThis.localStorage) {
  const key = (id) => `lessonserver:draft:${slug}:${id}`;
  const pending = new Map();   // exercise id -> {text, starter}
  let timer = null;
  const attempt = (action) => { try { return action(); } catch { return null; } };
  const flush = () => {
    clearTimeout(timer);
    for (const [id, {text, starter}] of pending) {
      // The starter itself is no draft: forgetting it lets course updates show through.
      attempt(() => (text === starter ? storage.removeItem(key(id)) : storage.setItem(key(id), text)));
    }
    pending.clear();
  };
  return {
    get: (id) => attempt(() => storage.getItem(key(id))),
    save(id, text, starter) {
      pending.set(id, {text, starter});
      clearTimeout(timer);
      timer = setTimeout(flush, DELAY_MS);
    },
    flush,
  };
}
