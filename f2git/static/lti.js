// The LTI pages: the picker's search, the self-posting form that returns to the LMS, and the
// login's browser binding kept in the platform's storage (LTI client-side postMessages) when
// third-party cookies are blocked.
"use strict";

function platformStorage(form) {
  const data = form.dataset;
  const frame = data.target === "_parent" ? window.parent : window.parent.frames[data.target];
  const id = Math.random().toString(36).slice(2) + Date.now().toString(36);
  const done = (value) => {
    if (data.action === "put") {
      window.location.href = data.next;
    } else {
      form.elements.binding.value = value || "";
      form.submit();
    }
  };
  if (!frame || frame === window) return done("");  // not framed: the cookie is all there is
  window.addEventListener("message", (event) => {
    const answer = event.data || {};
    if (event.origin !== data.origin || answer.message_id !== id) return;
    if (answer.error) {
      const reason = document.getElementById("reason");
      reason.textContent = data.failed + " " + (answer.error.message || answer.error.code);
      reason.hidden = false;
      return;
    }
    done(answer.value);
  });
  const message = data.action === "put"
    ? {subject: "lti.put_data", message_id: id, key: data.key, value: data.value}
    : {subject: "lti.get_data", message_id: id, key: data.key};
  frame.postMessage(message, data.origin);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-autosubmit]")) form.submit();
  const storage = document.getElementById("lti-storage");
  if (storage) platformStorage(storage);
  const search = document.getElementById("search");
  if (!search) return;
  search.addEventListener("input", () => {
    const words = search.value.trim().toLowerCase();
    for (const item of document.querySelectorAll("ul.picker li")) {
      item.hidden = words !== "" && !item.dataset.path.toLowerCase().includes(words);
    }
  });
});
