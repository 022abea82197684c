// f2git dashboard: local times, refresh with live progress, link builder, file search.
// Every form and link also works without it.
"use strict";
document.documentElement.classList.add("js");

function localTimes(root) {
  const format = new Intl.DateTimeFormat(undefined, {day: "numeric", month: "short", hour: "2-digit", minute: "2-digit"});
  for (const node of root.querySelectorAll("time[datetime]")) {
    const moment = new Date(node.getAttribute("datetime"));
    if (!isNaN(moment)) { node.title = moment.toString(); node.textContent = format.format(moment); }
  }
}

function say(node, text, kind) {
  node.textContent = text;
  node.classList.remove("done", "failed");
  if (kind) node.classList.add(kind);
}

function watchRefresh(form) {
  const panel = form.closest("section");
  const bar = panel.querySelector("progress");
  const status = panel.querySelector(".sync-status");
  const button = form.querySelector("button");
  const events = new URL(form.dataset.events, location.href);

  function follow() {
    button.disabled = true;
    bar.hidden = false;
    bar.removeAttribute("value");  // indeterminate until files are counted
    const source = new EventSource(events);
    source.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.phase === "finished") {
        source.close();
        button.disabled = false;
        bar.hidden = true;
        say(status, event.message, event.ok ? "done" : "failed");
        const commit = document.getElementById("commit");
        if (commit && event.commit) commit.textContent = event.commit;
        reloadLiveParts();
        return;
      }
      if (event.phase === "downloading" && event.total) {
        bar.max = event.total;
        bar.value = event.done;
        say(status, `Downloading ${event.done + 1} of ${event.total}: ${event.path}`);
      } else if (event.phase === "writing") {
        say(status, "Writing the new snapshot…");
      } else {
        say(status, "Reading the course's files from the source…");
      }
    };
    source.onerror = () => {
      source.close();
      button.disabled = false;
      bar.hidden = true;
      say(status, "Lost the connection to f2git; reload the page to see the outcome.", "failed");
    };
  }

  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    say(status, "Starting the refresh…");
    try {
      const answer = await fetch(form.action, {method: "POST", body: new FormData(form),
                                              headers: {"Accept": "application/json"}, credentials: "same-origin"});
      if (!answer.ok) {
        const body = await answer.json().catch(() => ({}));
        say(status, body.error || `The refresh could not start (${answer.status}).`, "failed");
        return;
      }
    } catch (error) {
      say(status, "f2git could not be reached.", "failed");
      return;
    }
    follow();
  });
  // a refresh was already running when the page loaded: follow it (once per panel)
  if (status.textContent.trim() && form === panel.querySelector("form.refresh")) follow();
}

// After a refresh: the parts of the page marked data-live (health, facts, files, skipped,
// history, the mass-delete confirmation) are replaced by the server's current rendering.
async function reloadLiveParts() {
  let answer;
  try {
    answer = await fetch(location.href, {headers: {"Accept": "text/html"}, credentials: "same-origin"});
  } catch (error) {
    return;  // the status line already says how the refresh ended
  }
  if (!answer.ok) return;
  const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
  for (const old of document.querySelectorAll("[data-live][id]")) {
    const replacement = fresh.getElementById(old.id);
    if (!replacement) continue;
    const open = [...old.querySelectorAll("details[open]")].map((node) => node.dataset.folder);
    const node = document.importNode(replacement, true);
    for (const folder of node.querySelectorAll("details")) if (open.includes(folder.dataset.folder)) folder.open = true;
    old.replaceWith(node);
    localTimes(node);
    node.querySelectorAll("form.refresh").forEach(watchRefresh);
    node.querySelectorAll(".tree").forEach(fileSearch);
  }
  document.dispatchEvent(new CustomEvent("f2git:updated"));
}

function linkBuilder(form) {
  const select = form.querySelector("select[name=app]");
  const branch = form.querySelector("select[name=branch]");  // only when the course has pins
  const pathInput = form.querySelector("input[name=path]");
  const target = form.querySelector(".link-target strong");
  const endpoint = new URL(form.dataset.link, location.href);
  const panel = form.closest("section");
  const status = panel.querySelector(".copy-status");

  async function show(path) {
    endpoint.searchParams.set("path", path);
    endpoint.searchParams.set("app", select.value);
    if (branch) endpoint.searchParams.set("branch", branch.value);
    const answer = await fetch(endpoint, {headers: {"Accept": "application/json"}, credentials: "same-origin"});
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok) { say(status, body.error || `No link (${answer.status}).`, "failed"); return; }
    pathInput.value = path;
    target.textContent = path || "the course folder";
    form.querySelector(".folder-instead").hidden = !path;  // no "instead" for what is chosen
    document.getElementById("door-link").value = body.door;
    document.getElementById("link").value = body.link;
    document.getElementById("link-markdown").value = body.markdown;
    document.getElementById("link-html").value = body.html;
    document.getElementById("try-link").href = body.try;
    for (const row of document.querySelectorAll(".tree li.file")) row.classList.toggle("picked", row.dataset.path === path);
    say(status, path ? `The link opens ${path}.` : "The link opens the course folder.", "done");
    const url = new URL(location.href);
    if (path) url.searchParams.set("path", path); else url.searchParams.delete("path");
    url.searchParams.set("app", select.value);
    if (branch) url.searchParams.set("branch", branch.value);
    history.replaceState(null, "", url);
  }

  select.addEventListener("change", () => show(pathInput.value));
  if (branch) branch.addEventListener("change", () => show(pathInput.value));
  // a file picked in the tree (or "the course folder"): one listener for rows added later too
  document.addEventListener("click", (click) => {
    const pick = click.target.closest("a.pick");
    if (!pick) return;
    click.preventDefault();
    const row = pick.closest("li.file");
    show(row ? row.dataset.path : "").then(() => panel.scrollIntoView({block: "start"}));
  });
}

function fileSearch(tree) {
  const input = document.getElementById("file-filter");
  const status = tree.closest("section").querySelector(".filter-status");
  if (!input) return;
  function filter() {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    const folders = tree.querySelectorAll("li.folder");
    let shown = 0;
    for (const row of tree.querySelectorAll("li.file")) {
      const match = words.every((word) => row.dataset.path.toLowerCase().includes(word));
      row.hidden = !match;
      if (match) shown += 1;
    }
    for (const folder of folders) {
      const any = folder.querySelector("li.file:not([hidden])") !== null;
      folder.hidden = !any;
      if (words.length) folder.querySelector("details").open = any;
    }
    say(status, words.length ? `${shown} matching file${shown === 1 ? "" : "s"}.` : "");
  }
  input.oninput = filter;  // replaced, not added: the tree itself may be replaced after a refresh
  if (input.value) filter();
}

async function copy(button) {
  const input = document.getElementById(button.dataset.copies);
  const what = input.labels.length ? input.labels[0].textContent.split(" ")[0] : "text";
  const status = button.closest("section").querySelector(".copy-status");
  try {
    await navigator.clipboard.writeText(input.value);
  } catch (error) {  // no clipboard API (plain http on another host): select and copy
    input.select();
    document.execCommand("copy");
  }
  say(status, button.dataset.says || (what === "nbgitpuller" ? "Copied the link." : `Copied the ${what}.`), "done");
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  document.querySelectorAll("form.refresh").forEach(watchRefresh);
  document.querySelectorAll("form.link-builder").forEach(linkBuilder);
  document.querySelectorAll(".tree").forEach(fileSearch);
  document.querySelectorAll("button.copy").forEach((button) => button.addEventListener("click", () => copy(button)));
});
