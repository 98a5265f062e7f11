// The zoo table: click a header to sort; filter by text, family and what a model publishes.
(() => {
  const table = document.getElementById("zoo");
  if (!table) return;
  const rows = () => [...table.tBodies[0].rows];
  const value = (row, i, type) => {
    const cell = row.cells[i];
    const text = cell.dataset.sort ?? cell.textContent.trim();
    return type === "number" ? (text === "" ? Infinity : Number(text)) : text.toLowerCase();
  };
  table.querySelectorAll("th.sortable").forEach((th, i) => {
    th.onclick = () => {
      const dir = th.dataset.dir === "asc" ? -1 : 1;
      th.dataset.dir = dir === 1 ? "asc" : "desc";
      const sorted = rows().sort((a, b) => {
        const x = value(a, i, th.dataset.type), y = value(b, i, th.dataset.type);
        return (x < y ? -1 : x > y ? 1 : 0) * dir;
      });
      table.tBodies[0].append(...sorted);
    };
  });
  const filter = () => {
    const text = document.getElementById("filter").value.toLowerCase();
    const family = document.getElementById("family").value, has = document.getElementById("has").value;
    for (const row of rows()) {
      row.hidden = (text && !row.textContent.toLowerCase().includes(text)) || (family && row.dataset.family !== family) ||
        (has && !row.dataset.published.split(" ").includes(has));
    }
  };
  for (const id of ["filter", "family", "has"]) document.getElementById(id).addEventListener("input", filter);
})();
