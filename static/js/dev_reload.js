// `serve --dev` only: the page waits (long poll) for its lesson to change on disk, then reloads.
const root = document.querySelector("[data-dev-version]");
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function watch() {
  const known = root.dataset.devVersion;
  const url = `/_dev/lessons/${encodeURIComponent(root.dataset.lesson)}/version?known=${encodeURIComponent(known)}`;
  for (;;) {
    try {
      const answer = await fetch(url, {cache: "no-store"});
      if (answer.ok && (await answer.json()).version !== known) {
        location.reload();
        return;
      }
      if (!answer.ok) await pause(1000);
    } catch {
      await pause(1000);   // the server restarts: ask again
    }
  }
}

if (root) watch();
