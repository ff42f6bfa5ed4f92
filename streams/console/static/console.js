// Keyboard for the review queue: j/k move, a accept, 1-5 pick, n not a product,
// c/d confirm/dismiss a duplicate, / search the taxonomy. No inline script (CSP).
"use strict";
(function () {
  const items = () => Array.from(document.querySelectorAll("article.item"));
  let current = 0;
  function select(i) {
    const all = items();
    if (!all.length) return;
    current = Math.max(0, Math.min(i, all.length - 1));
    all.forEach((el, j) => el.classList.toggle("selected", j === current));
    all[current].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("DOMContentLoaded", () => {
    const queue = document.getElementById("queue");
    if (!queue) return;
    select(parseInt(queue.dataset.selected || "0", 10) || 0);
    document.querySelectorAll("#filters select").forEach((s) =>
      s.addEventListener("change", () => document.getElementById("filters").submit()));
  });
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const all = items();
    if (!all.length) return;
    const item = all[current];
    if (ev.key === "j") { select(current + 1); ev.preventDefault(); return; }
    if (ev.key === "k") { select(current - 1); ev.preventDefault(); return; }
    if (ev.key === "/") {
      const input = item.querySelector("form.search input[name=label]");
      if (input) { input.focus(); ev.preventDefault(); }
      return;
    }
    const button = item.querySelector(`button[data-key="${ev.key}"]`);
    if (button) { ev.preventDefault(); button.form.requestSubmit(button); }
  });
})();
