// f2git dashboard: local times, refresh with live progress, link builder. Forms work without it.
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

function linkBuilder(form) {
  const select = form.querySelector("select");
  const output = document.getElementById("link");
  const endpoint = new URL(form.dataset.link, location.href);
  select.addEventListener("change", async () => {
    endpoint.searchParams.set("path", select.value);
    const answer = await fetch(endpoint, {headers: {"Accept": "application/json"}, credentials: "same-origin"});
    const body = await answer.json();
    output.value = body.link || "";
    const url = new URL(location.href);
    if (select.value) url.searchParams.set("path", select.value); else url.searchParams.delete("path");
    history.replaceState(null, "", url);
  });
}

async function copy(button) {
  const input = document.getElementById(button.dataset.copies);
  const status = button.closest("section").querySelector(".copy-status");
  try {
    await navigator.clipboard.writeText(input.value);
  } catch (error) {  // no clipboard API (plain http on another host): select and copy
    input.select();
    document.execCommand("copy");
  }
  say(status, "Copied the link.", "done");
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  document.querySelectorAll("form.refresh").forEach(watchRefresh);
  document.querySelectorAll("form.link-builder").forEach(linkBuilder);
  document.querySelectorAll("button.copy").forEach((button) => button.addEventListener("click", () => copy(button)));
});
