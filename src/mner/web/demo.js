// The mner web demo: sends the form to POST /v1/tag (multipart) and shows what came back.
// Everything the server or the user wrote is put on the page as text (textContent), never as HTML.
"use strict";

const TYPES = {PER: "person", LOC: "location", ORG: "organisation", OTHER: "other name"};

const $ = (id) => document.getElementById(id);

function element(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

function typeClass(type) {
  return "type-" + (type in TYPES ? type : "unknown");
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function renderLegend() {
  $("legend").replaceChildren(...Object.entries(TYPES).map(
    ([type, name]) => element("li", {className: typeClass(type), textContent: `${type} — ${name}`})));
}

let last = null;  // the last answer: the minimum score filters it again without asking the server

function score(entity) {
  return entity.score == null ? "" : Number(entity.score).toFixed(2);
}

// The post's tokens, each entity (token offsets start..end, end exclusive) as a coloured <mark>; entities scored
// below the minimum score are left out, and said so.
function renderTagged(tokens, all) {
  const minimum = Number($("min-score").value);
  const entities = all.filter((e) => e.score == null || e.score >= minimum);
  const hidden = all.length - entities.length;
  const starts = new Map(entities.map((e) => [e.start, e]));
  const parts = [];
  for (let i = 0; i < tokens.length;) {
    if (parts.length) parts.push(" ");
    const entity = starts.get(i);
    if (entity && entity.end > i) {
      parts.push(element("mark", {className: "entity " + typeClass(entity.type),
        title: `${entity.type}, score ${score(entity)}`}, [
        tokens.slice(entity.start, entity.end).join(" "),
        element("span", {className: "type", textContent: entity.type}),
      ]));
      i = entity.end;
    } else {
      parts.push(tokens[i]);
      i += 1;
    }
  }
  $("tagged").replaceChildren(...parts);
  const items = entities.map((e) => element("li", {className: "entity-item " + typeClass(e.type)}, [
    `${e.text} → ${e.type} (${TYPES[e.type] || "?"})`,
    element("span", {className: "score", textContent: e.score == null ? "" : ` score ${score(e)}`}),
  ]));
  if (!entities.length) items.push(element("li", {className: "muted", textContent: "No entities found."}));
  if (hidden) {
    items.push(element("li", {className: "muted hidden-count",
      textContent: `${hidden} more scored below ${minimum.toFixed(2)} (lower the minimum score to see them).`}));
  }
  $("entity-list").replaceChildren(...items);
}

// What the post had and could not use, and what to do about it.
function renderWarnings(warnings, readAs) {
  const lines = [...(warnings || [])];
  if (readAs && readAs.route === "none") {
    lines.push("The context named nothing in the post: it was tagged from its text alone. Give an entity list, " +
      "e.g. “Named entities:1. Bears (sports team)2. Chicago (city)”, as mner ask-llm writes it.");
  }
  $("warnings").replaceChildren(...lines.map((w) => element("li", {className: "warning", textContent: w})));
  $("warnings").hidden = !lines.length;
}

// The entities and kinds the model understood in the context, and the path the post took.
function renderReadAs(readAs) {
  const box = $("read-as");
  if (!readAs) {
    box.replaceChildren(element("p", {className: "muted",
      textContent: "No context read (none given, or the model reads none)."}));
    return;
  }
  const rows = readAs.entities.map((e) => element("li", {className: "read-entity"}, [
    element("strong", {textContent: e.name}),
    ` — ${e.kind || "no kind"} → ${e.type || "no type"}`,
    e.in_post ? "" : element("span", {className: "muted", textContent: " (not in the post)"}),
  ]));
  box.replaceChildren(
    rows.length ? element("ul", {}, rows) : element("p", {className: "muted", textContent: "No entity read."}),
    element("p", {className: "route"}, [element("strong", {textContent: `Route: ${readAs.route}`}),
      ` — ${readAs.path}`]),
  );
}

function renderAttributes(attributes) {
  if (attributes === null) {
    $("attributes").replaceChildren(element("li", {className: "muted", textContent: "Image not read."}));
    return;
  }
  if (!attributes || !attributes.length) {
    $("attributes").replaceChildren(element("li", {className: "muted", textContent: "No image sent."}));
    return;
  }
  $("attributes").replaceChildren(...attributes.slice(0, 5).map((a) => {
    const percent = (100 * a.probability).toFixed(1) + "%";
    return element("li", {className: "attribute"}, [
      element("span", {className: "label", textContent: a.label}),
      element("span", {className: "bar"}, [element("span", {style: `width: ${percent}`})]),
      element("span", {className: "probability", textContent: percent}),
    ]);
  }));
}

function renderKnowledge(knowledge) {
  const box = $("knowledge");
  if (!knowledge) {
    box.replaceChildren(element("p", {className: "muted",
      textContent: "No knowledge graph used (start the server with --kg FILE for a model that reads one)."}));
    return;
  }
  if (knowledge.path === "none" || (!knowledge.entity && !(knowledge.triples || []).length)) {
    box.replaceChildren(element("p", {className: "muted", textContent: "The knowledge graph had nothing for this post."}));
    return;
  }
  const how = [knowledge.path && `found by ${knowledge.path}`, knowledge.mention && `for “${knowledge.mention}”`,
    knowledge.hop != null && `hop ${knowledge.hop}`,
    knowledge.similarity != null && `similarity ${Number(knowledge.similarity).toFixed(2)}`].filter(Boolean);
  const rows = (knowledge.triples || []).map((t) => element("tr", {}, t.map((part) => element("td", {textContent: part}))));
  box.replaceChildren(
    element("p", {}, [element("strong", {textContent: knowledge.label || knowledge.entity || "?"}),
      knowledge.type ? ` (${knowledge.type})` : "", how.length ? ` — ${how.join(", ")}` : ""]),
    rows.length ? element("table", {className: "triples"}, [element("tbody", {}, rows)])
      : element("p", {className: "muted", textContent: "No triples."}),
  );
}

async function submitPost(event) {
  event.preventDefault();
  const text = $("text").value;
  const form = new FormData();
  form.append("text", text);
  const file = $("image").files[0];
  // the page shows the image's classes: asked for, whether the model reads the image or not
  if (file) { form.append("image", file, file.name); form.append("attributes", "true"); }
  // the channels' text fields (caption, context): every input marked data-field, sent under its name
  for (const input of document.querySelectorAll("[data-field]")) {
    const value = input.value.trim();
    if (value) form.append(input.name, value);
  }

  $("error").hidden = true;
  $("submit").disabled = true;
  $("status").textContent = "Tagging…";
  try {
    const response = await fetch("/v1/tag", {method: "POST", body: form});
    let body = null;
    try { body = await response.json(); } catch { /* not JSON: reported below */ }
    if (!response.ok) {
      showError(`Error ${response.status}: ${(body && body.error) || response.statusText}`);
      $("result").hidden = true;
      return;
    }
    last = body;
    renderWarnings(body.warnings, body.read_as);
    renderTagged(body.tokens, body.entities);
    renderReadAs(body.read_as);
    renderAttributes(body.attributes);
    renderKnowledge(body.knowledge);
    $("result").hidden = false;
  } catch (err) {
    showError(`Cannot reach the server: ${err.message}`);
  } finally {
    $("submit").disabled = false;
    $("status").textContent = "";
  }
}

function previewImage() {
  const file = $("image").files[0];
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.hidden = !file;
  if (file) preview.src = URL.createObjectURL(file);
}

// A /health value as a short text: a string as it is, an object by its name or path.
function shortText(value) {
  if (value == null || value === "") return "none";
  if (typeof value !== "object") return String(value);
  return value.name || value.path || JSON.stringify(value);
}

async function showModel() {
  try {
    const health = await (await fetch("/health")).json();
    $("model-info").textContent = `Model: ${shortText(health.model)} · channels: ${(health.channels || []).join(", ")}` +
      ` · files: ${Object.entries(health.files || {}).map(([c, f]) => `${c} ${shortText(f)}`).join(", ") || "none"}` +
      ` · image backbone: ${shortText(health.image_backbone)}`;
  } catch (err) {
    $("model-info").textContent = "The server did not answer /health.";
  }
}

renderLegend();
$("post-form").addEventListener("submit", submitPost);
$("image").addEventListener("change", previewImage);
$("min-score").addEventListener("input", () => {
  $("min-score-value").textContent = Number($("min-score").value).toFixed(2);
  if (last) renderTagged(last.tokens, last.entities);
});
showModel();
