// The LTI pages: the picker's search, and the self-posting form that returns to the LMS.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-autosubmit]")) form.submit();
  const search = document.getElementById("search");
  if (!search) return;
  search.addEventListener("input", () => {
    const words = search.value.trim().toLowerCase();
    for (const item of document.querySelectorAll("ul.picker li")) {
      item.hidden = words !== "" && !item.dataset.path.toLowerCase().includes(words);
    }
  });
});
