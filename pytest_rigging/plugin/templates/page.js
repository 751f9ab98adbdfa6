// pytest-rigging's HTML report: drawn from the page's one JSON data block. Every text of
// the run enters the page as a text node (append, textContent), never as markup; the
// grid's rows are added a page at a time as they scroll into view, and a cell's samples
// are drawn only when it is opened.
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("rig-data").textContent);
  const STATUS = {
    passed: "passed",
    failed: "failed",
    exhausted: "parse exhausted",
    error: "infrastructure error",
    skipped: "skipped",
    interrupted: "interrupted or lost",
    known: "known failure",
    unjudged: "not judged alone",
    unscored: "unscored (no verdict)",
  };
  const SHORT = {
    passed: "passed", failed: "failed", exhausted: "failed", error: "error",
    skipped: "skipped", interrupted: "lost", known: "failed", unjudged: "-",
    unscored: "unscored",
  };
  const FAILING = new Set(["failed", "exhausted", "error", "known", "interrupted"]);
  const CHAT_FIELDS = new Set([
    "model", "label", "params", "sample", "outcome", "recovery_rounds", "error_kind", "error",
    "input_tokens", "output_tokens", "latency", "generator_id", "conversation", "cost",
    "check", "check_message",
  ]);
  const PAGE_ROWS = 100;

  // el("div", {class: "x"}, "text", child): an element; strings become text nodes.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function percent(value) {
    return (value * 100).toFixed(1);
  }
  function rateText(value, interval) {
    if (value === null || value === undefined) return "-";
    let text = percent(value) + "%";
    if (interval) text += " [" + percent(interval[0]) + "-" + percent(interval[1]) + "]";
    return text;
  }
  function cost(value) {
    return value === null || value === undefined ? "-" : "$" + value.toFixed(4);
  }
  function seconds(value) {
    return value === null || value === undefined ? "-" : value.toFixed(2) + "s";
  }
  function plural(count, word) {
    return count + " " + word + (count === 1 ? "" : "s");
  }

  const columns = data.columns;
  const items = data.items;
  const rows = data.rows;
  const run = data.run;
  const baseline = run.baseline;
  const labels = columns.map((c) => c.label);
  const columnName = columns.map((c) => (labels.indexOf(c.label) === labels.lastIndexOf(c.label) ? c.label : c.model));
  const paramsShown = new Set(columns.map((c) => c.params)).size > 1 || columns.some((c) => c.params !== "{}");
  const byRow = rows.map(() => new Array(columns.length).fill(-1));
  items.forEach((item, index) => { byRow[item.row][item.column] = index; });

  // The run: when, on what, how it went, its gates and the baseline's counts.
  function drawRun() {
    const header = document.getElementById("run");
    const settings = run.settings;
    const totals = run.totals;
    header.append(el("h1", null, "pytest-rigging report"));
    const facts = el("div", { class: "facts" });
    const fact = (name, value) => facts.append(el("span", null, el("b", null, name + ": "), value));
    if (settings.started) fact("started", settings.started.replace("T", " ").replace("+00:00", " UTC"));
    fact("models", (settings.models || []).join(", ") || "-");
    fact("params", (settings.params || []).join(" | ") || "-");
    if (settings.runs !== undefined) fact("runs", settings.runs);
    if (settings.concurrency !== undefined) fact("concurrency", settings.concurrency);
    if (settings.merged_from) fact("merged from", plural(settings.merged_from, "report"));
    header.append(facts);
    if (settings.interrupted) {
      header.append(el("div", { class: "banner" }, "The run was interrupted: the figures hold what finished."));
    }
    const counts = Object.keys(STATUS)
      .filter((s) => totals.statuses[s])
      .map((s) => totals.statuses[s] + " " + STATUS[s]);
    const sums = el("div", { class: "facts", id: "totals" });
    sums.append(el("span", null, el("b", null, plural(totals.items, "item") + ": "), counts.join(", ") || "none"));
    sums.append(el("span", null, el("b", null, "samples passed: "), totals.samples_passed + "/" + totals.samples_total));
    sums.append(el("span", null, el("b", null, "tokens in/out: "), totals.input_tokens + "/" + totals.output_tokens));
    sums.append(el("span", null, el("b", null, "cost: "), cost(totals.cost)));
    header.append(sums);
    if (data.gates.length) {
      const gates = el("ul", { class: "gates", id: "gates" });
      for (const gate of data.gates) {
        gates.append(el("li", null,
          el("span", { class: "badge " + (gate.passed ? "pass" : "fail") }, gate.passed ? "pass" : "FAIL"),
          gate.message));
      }
      header.append(gates);
    }
    if (baseline) {
      header.append(el("div", { class: "facts", id: "baseline" },
        el("span", null, el("b", null, "against " + baseline.name + ": "),
          baseline.regressed + " flipped to failing, " + baseline.fixed + " fixed, " +
          plural(baseline.known, "known failure"))));
    }
  }

  function bar(name, value, interval) {
    const track = el("span", { class: "bar " + name, role: "img", "aria-label": name.replace("_", " ") + " " + rateText(value, interval) });
    if (interval) {
      const band = el("span", { class: "band" });
      band.style.left = interval[0] * 100 + "%";
      band.style.width = (interval[1] - interval[0]) * 100 + "%";
      track.append(band);
    }
    if (value !== null && value !== undefined) {
      const point = el("span", { class: "point" });
      point.style.left = value * 100 + "%";
      track.append(point);
    }
    return el("span", { class: "rate" }, track, el("span", { class: "rate-text" }, rateText(value, interval)));
  }

  // Per model: the terminal table's figures, each rate with its 95% interval as a bar.
  function drawModels() {
    const section = document.getElementById("models");
    section.append(el("h2", null, "Models"));
    const names = data.models.map((r) => r.label || r.model);
    const judged = data.models.some((r) => r.verdicts);
    const tooled = data.models.some((r) => r.tool_calls);
    const head = ["model", "items ok/fail/err", "parse rate [95% CI]", "pass rate [95% CI]",
      ...(judged ? ["judged pass [95% CI]", "unstable", "unscored"] : []),
      ...(tooled ? ["tool calls parsed [95% CI]"] : []),
      "error rate [95% CI]", "chats", "tokens in/out", "cost", "latency p50"];
    const table = el("table", { id: "model-table" },
      el("thead", null, el("tr", null, ...head.map((h) => el("th", null, h)))));
    const body = el("tbody");
    data.models.forEach((row, n) => {
      const name = names.indexOf(names[n]) === names.lastIndexOf(names[n]) ? names[n] : row.model;
      body.append(el("tr", { "data-model": row.model },
        el("td", { class: "model", title: row.model }, name),
        el("td", { class: "items" }, row.items_passed + "/" + row.items_failed + "/" + row.items_errored),
        el("td", { class: "parse" }, bar("parse_rate", row.parse_rate, row.parse_rate_interval)),
        el("td", { class: "pass" }, bar("pass_rate", row.pass_rate, row.pass_rate_interval)),
        ...(judged ? [
          el("td", { class: "judged" }, bar("judged_pass_rate", row.judged_pass_rate ?? null, row.judged_pass_rate_interval ?? null)),
          el("td", { class: "unstable" }, row.verdicts ? String(row.unstable) : "-"),
          el("td", { class: "unscored" }, row.verdicts ? String(row.unscored_rate_counts[0]) : "-"),
        ] : []),
        ...(tooled ? [
          el("td", { class: "tools" }, bar("tool_parse_rate", row.tool_parse_rate ?? null, row.tool_parse_rate_interval ?? null)),
        ] : []),
        el("td", { class: "errors" }, bar("error_rate", row.error_rate, row.error_rate_interval)),
        el("td", null, row.chats),
        el("td", null, row.input_tokens + "/" + row.output_tokens),
        el("td", null, cost(row.cost)),
        el("td", null, seconds(row.median_latency))));
    });
    table.append(body);
    section.append(table);
    if (data.judges.length) drawJudges(section);
  }

  // Per judge and model it judged: its verdicts, and how far it can be trusted (its
  // agreement with people's labels, its order flips), the judged rate corrected by it.
  function drawJudges(section) {
    section.append(el("h2", null, "Judges"));
    const head = ["judge", "model", "verdicts", "judged pass [95% CI]", "corrected [95% CI]",
      "unstable", "unscored", "order flips", "kappa", "sensitivity", "specificity", "labels"];
    const number = (v) => (v === null || v === undefined ? "-" : v.toFixed(2));
    const body = el("tbody");
    for (const judge of data.judges) {
      judge.models.forEach((rate, n) => {
        body.append(el("tr", { "data-judge": judge.id },
          el("td", { class: "judge", title: judge.rubric }, n === 0 ? judge.id : ""),
          el("td", null, rate.label || rate.model),
          el("td", null, rate.verdicts),
          el("td", null, bar("judged_pass_rate", rate.pass_rate, rate.pass_rate_interval)),
          el("td", null, rate.corrected === null ? "-" : bar("corrected", rate.corrected, rate.corrected_interval)),
          el("td", null, rate.unstable),
          el("td", null, rate.unscored),
          el("td", null, n === 0 && judge.comparisons ? judge.flipped + "/" + judge.comparisons : "-"),
          el("td", null, n === 0 ? number(judge.kappa) : ""),
          el("td", null, n === 0 ? number(judge.sensitivity) : ""),
          el("td", null, n === 0 ? number(judge.specificity) : ""),
          el("td", null, n === 0 ? judge.labels : "")));
      });
    }
    section.append(el("table", { id: "judge-table" },
      el("thead", null, el("tr", null, ...head.map((h) => el("th", null, h)))), body));
  }

  // Filters and sorting: a cell shows when it matches every filter; a row when one of
  // its cells does.
  const filters = {
    model: document.getElementById("filter-model"),
    status: document.getElementById("filter-status"),
    text: document.getElementById("filter-text"),
    flips: document.getElementById("filter-flips"),
    sort: document.getElementById("sort"),
  };
  const haystacks = new Map();
  function haystack(index) {
    let text = haystacks.get(index);
    if (text === undefined) {
      const item = items[index];
      const parts = [item.nodeid];
      for (const chat of item.chats) {
        for (const message of chat.conversation) parts.push(message.content);
        parts.push(chat.error || "", chat.check_message || "");
      }
      text = parts.join("\n").toLowerCase();
      haystacks.set(index, text);
    }
    return text;
  }

  function visibleColumns() {
    const chosen = filters.model.value;
    return chosen === "" ? columns.map((c, n) => n) : [Number(chosen)];
  }

  function selectRows(shownColumns) {
    const status = filters.status.value;
    const text = filters.text.value.trim().toLowerCase();
    const flips = filters.flips.checked;
    const selected = [];
    rows.forEach((key, row) => {
      const keyMatches = text === "" || key.toLowerCase().includes(text);
      const cells = shownColumns.map((column) => {
        const index = byRow[row][column];
        if (index < 0) return -1;
        const item = items[index];
        if (status && item.status !== status) return -1;
        if (flips && !item.flip) return -1;
        if (!keyMatches && !haystack(index).includes(text)) return -1;
        return index;
      });
      if (cells.some((index) => index >= 0)) selected.push({ row: row, cells: cells });
    });
    const sort = filters.sort.value;
    const score = (entry) => entry.cells.filter((index) =>
      index >= 0 && (sort === "flips" ? Boolean(items[index].flip) : FAILING.has(items[index].status))).length;
    if (sort !== "case") selected.sort((a, b) => score(b) - score(a) || a.row - b.row);
    return selected;
  }

  function cellButton(index) {
    const item = items[index];
    const count = item.samples ? item.samples[0] + "/" + item.samples[1] : SHORT[item.status];
    let title = rows[item.row] + " on " + columnName[item.column] + ": " + STATUS[item.status];
    if (item.samples) title += ", " + item.samples[0] + " of " + item.samples[1] + " samples passed";
    if (baseline) title += "; baseline: " + (item.baseline || "not in it");
    const button = el("button", {
      type: "button",
      class: "cell s-" + item.status + (item.flip ? " flipped" : ""),
      "data-item": index,
      "data-status": item.status,
      title: title,
    }, el("span", { class: "count" }, count));
    if (item.flip) {
      button.append(el("span", { class: "flip", "data-flip": item.flip }, item.flip === "regressed" ? "\u25bc" : "\u25b2"));
      button.append(el("span", { class: "was" }, "was " + item.baseline));
    }
    if (item.marks.length > 1) {
      button.append(el("span", { class: "strip", "aria-hidden": "true" },
        ...item.marks.map((mark) => el("i", { class: "s-" + mark }))));
    }
    return button;
  }

  let pending = [];
  let pendingColumns = [];
  const body = document.getElementById("grid-body");

  function appendRows() {
    const chunk = pending.splice(0, PAGE_ROWS);
    const fragment = document.createDocumentFragment();
    for (const entry of chunk) {
      const tr = el("tr", { "data-row": entry.row }, el("td", { class: "case", title: rows[entry.row] }, rows[entry.row]));
      entry.cells.forEach((index, n) => {
        const hasItem = byRow[entry.row][pendingColumns[n]] >= 0;
        tr.append(index >= 0 ? el("td", { class: "cell" }, cellButton(index))
          : el("td", { class: hasItem ? "cell off" : "cell empty" }));
      });
      fragment.append(tr);
    }
    body.append(fragment);
  }

  function drawGrid() {
    const shown = visibleColumns();
    const head = document.getElementById("grid-head");
    head.replaceChildren(el("th", { class: "case" }, "case"),
      ...shown.map((n) => el("th", { "data-column": n, title: columns[n].model + " " + columns[n].params },
        columnName[n], paramsShown ? el("span", { class: "params" }, columns[n].params) : null)));
    const selected = selectRows(shown);
    document.getElementById("shown-count").textContent =
      selected.length + " of " + plural(rows.length, "case") + " shown";
    body.replaceChildren();
    pending = selected;
    pendingColumns = shown;
    appendRows();
  }

  function drawFilters() {
    columns.forEach((c, n) => filters.model.append(el("option", { value: n },
      columnName[n] + (paramsShown ? " " + c.params : ""))));
    const present = new Set(items.map((item) => item.status));
    const legend = document.getElementById("legend");
    for (const [status, label] of Object.entries(STATUS)) {
      if (status === "unjudged") continue;
      if (present.has(status)) filters.status.append(el("option", { value: status }, label));
      legend.append(el("li", { class: "s-" + status }, label));
    }
    if (baseline) {
      document.getElementById("flips-label").hidden = false;
      legend.append(el("li", null, "\u25bc flipped to failing, \u25b2 fixed (against the baseline)"));
    }
    let timer = 0;
    const redraw = () => { clearTimeout(timer); timer = setTimeout(drawGrid, 120); };
    filters.text.addEventListener("input", redraw);
    for (const control of [filters.model, filters.status, filters.flips, filters.sort]) {
      control.addEventListener("change", drawGrid);
    }
    document.getElementById("filters").addEventListener("submit", (event) => event.preventDefault());
  }

  // A cell's dialog: every sample, every chat of it, every message; fields the page
  // doesn't know (a later version's) are shown as they are.
  function fields(pairs) {
    const list = el("dl", { class: "fields" });
    for (const [name, value] of pairs) {
      if (value === null || value === undefined || value === "") continue;
      list.append(el("dt", null, name), el("dd", null, value));
    }
    return list;
  }

  function shownValue(value) {
    return typeof value === "string" ? value : JSON.stringify(value, null, 2);
  }

  function drawChat(chat, item) {
    const box = el("div", { class: "chat" });
    const own = chat.model === columns[item.column].model;
    box.append(fields([
      ["model", own ? null : chat.label || chat.model],
      ["parse", chat.outcome ? chat.outcome.replace("_", " ") : "not parsed"],
      ["recovery rounds", chat.recovery_rounds],
      ["check", chat.check],
      ["latency", seconds(chat.latency)],
      ["tokens in/out", chat.input_tokens + "/" + chat.output_tokens],
      ["cost", chat.cost === null || chat.cost === undefined ? null : cost(chat.cost)],
      ["generator", chat.generator_id],
      ["error", chat.error ? (chat.error_kind ? chat.error_kind + ": " : "") + chat.error : null],
    ]));
    if (chat.check_message) box.append(el("pre", { class: "check-message" }, chat.check_message));
    for (const message of chat.conversation) {
      const extra = Object.keys(message).filter((k) => k !== "role" && k !== "content");
      box.append(el("div", { class: "message " + message.role },
        el("div", { class: "role" }, message.role),
        el("pre", null, message.content),
        extra.length ? fields(extra.map((k) => [k, shownValue(message[k])])) : null));
    }
    const extra = Object.keys(chat).filter((k) => !CHAT_FIELDS.has(k));
    if (extra.length) box.append(fields(extra.map((k) => [k.replace(/_/g, " "), shownValue(chat[k])])));
    return box;
  }

  function openDetail(index) {
    const item = items[index];
    const column = columns[item.column];
    const detail = document.getElementById("detail-body");
    detail.replaceChildren();
    detail.append(el("h3", null, rows[item.row]));
    detail.append(fields([
      ["cell", columnName[item.column] + " " + column.params],
      ["outcome", STATUS[item.status]],
      ["samples passed", item.samples ? item.samples[0] + "/" + item.samples[1] : null],
      ["baseline", baseline ? (item.baseline || "not in the baseline") +
        (item.flip ? (item.flip === "regressed" ? " (flipped to failing)" : " (fixed)") : "") : null],
      ["case", item.case ? item.case.id + " (" + item.case.source + ", " + item.case.hash.slice(0, 12) + ")" : null],
      ["lost", item.lost],
      ["duration", seconds(item.duration)],
      ["node id", item.nodeid],
    ]));
    const samples = new Map();
    for (const chat of item.chats) {
      const key = chat.sample === null ? "own" : chat.sample;
      if (!samples.has(key)) samples.set(key, []);
      samples.get(key).push(chat);
    }
    if (!samples.size) detail.append(el("p", { class: "muted" }, "No chat finished for this item."));
    const numbered = [...samples.keys()].filter((k) => k !== "own").sort((a, b) => a - b);
    numbered.forEach((number, n) => {
      const mark = item.marks[n] || "unjudged";
      const section = el("section", { class: "sample", "data-sample": number },
        el("h4", null, "sample " + number + " \u00b7 ", el("span", { class: "s-" + mark, style: "color: var(--fg)" }, STATUS[mark])));
      for (const chat of samples.get(number)) section.append(drawChat(chat, item));
      detail.append(section);
    });
    if (samples.has("own")) {
      const section = el("section", { class: "sample", "data-sample": "own" }, el("h4", null, "the test's own chats"));
      for (const chat of samples.get("own")) section.append(drawChat(chat, item));
      detail.append(section);
    }
    const dialog = document.getElementById("detail");
    if (!dialog.open) dialog.showModal();
    dialog.scrollTop = 0;
  }

  drawRun();
  drawModels();
  drawFilters();
  drawGrid();
  body.addEventListener("click", (event) => {
    const button = event.target.closest("button.cell");
    if (button) openDetail(Number(button.dataset.item));
  });
  const more = document.getElementById("more");
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting) && pending.length) {
      appendRows();
      observer.unobserve(more); // observed again: called again while it is still in view
      observer.observe(more);
    }
  }, { rootMargin: "600px" });
  observer.observe(more);
  performance.mark("rig-drawn"); // the benchmark reads when the first rows were drawn
  document.body.dataset.ready = "true";
})();
