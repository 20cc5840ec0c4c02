// Image gallery: upload (direct uploads to S3), browse, filter, view, download, edit, delete.
// Every piece of user text goes into the page with textContent or an attribute, never
// as HTML. All URLs are relative to <base href>, so the page works under any API prefix.
import { paint } from "./blurhash.js";

const body = document.body;
const AUTH_MODE = body.dataset.authMode || "none";
const params = new URLSearchParams(window.location.search);
// Page size of the listing; ?limit=N (1-100) overrides it (the browser tests use it).
const PAGE_SIZE = clampInt(params.get("limit"), 1, 100, 24);
// Files uploaded at once from one drop or pick.
const UPLOAD_CONCURRENCY = 3;
const TILE_SIZES = "(max-width: 480px) 50vw, (max-width: 1200px) 25vw, 300px";

const $ = (id) => document.getElementById(id);
const el = {
  actingAs: $("acting-as"),
  token: $("token"),
  dropZone: $("drop-zone"),
  fileInput: $("file-input"),
  uploadTitle: $("upload-title"),
  uploadTags: $("upload-tags"),
  uploadList: $("upload-list"),
  filters: $("filters"),
  gallery: $("gallery"),
  status: $("gallery-status"),
  sentinel: $("sentinel"),
  dialog: $("detail"),
};

function clampInt(raw, low, high, fallback) {
  const value = Number.parseInt(raw ?? "", 10);
  return Number.isFinite(value) && value >= low && value <= high ? value : fallback;
}

// ---- identity --------------------------------------------------------------------------

function setUpIdentity() {
  const tokenMode = AUTH_MODE !== "none";
  $("identity-none").hidden = tokenMode;
  $("identity-token").hidden = !tokenMode;
  el.actingAs.value = localStorage.getItem("gallery.actingAs") || "";
  el.token.value = sessionStorage.getItem("gallery.token") || "";
  el.actingAs.addEventListener("change", () => {
    localStorage.setItem("gallery.actingAs", el.actingAs.value.trim());
    uploadHeldFiles();
  });
  let appliedToken = el.token.value.trim();
  el.token.addEventListener("change", () => {
    const token = el.token.value.trim();
    sessionStorage.setItem("gallery.token", token);
    // What the gallery shows depends on the token; reload only when it changed.
    if (token !== appliedToken) {
      appliedToken = token;
      reloadGallery();
    }
  });
}

/** Who the caller is: the acting-as user (AUTH_MODE=none) or the token's `sub`. */
function currentUser() {
  if (AUTH_MODE === "none") return el.actingAs.value.trim() || null;
  const token = el.token.value.trim();
  const payload = token.split(".")[1];
  if (!payload) return null;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const sub = JSON.parse(json).sub;
    return typeof sub === "string" ? sub : null;
  } catch {
    return null;
  }
}

function authHeaders() {
  if (AUTH_MODE === "none") {
    const user = currentUser();
    return user ? { "X-User-Id": user } : {};
  }
  const token = el.token.value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// ---- API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function errorMessage(status, payload, fallback) {
  const message =
    payload && typeof payload === "object" ? payload.Message || payload.message : null;
  return `${status}: ${message || fallback || "request failed"}`;
}

/** Call the API at `path` (relative) with `extraHeaders`; returns the parsed JSON or
 * throws ApiError. */
async function api(method, path, json, extraHeaders = {}) {
  const headers = { Accept: "application/json", ...authHeaders(), ...extraHeaders };
  const init = { method, headers };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, `network error: ${error.message}`);
  }
  const text = await response.text();
  let payload = null;
  try {
    payload = text ? JSON.parse(text) : null;
  } catch {
    payload = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, errorMessage(response.status, payload, response.statusText));
  }
  return payload;
}

// ---- upload ----------------------------------------------------------------------------

function parseTags(text) {
  return text
    .split(",")
    .map((tag) => tag.trim())
    .filter(Boolean);
}

function uploadRow(file) {
  const item = document.createElement("li");
  item.className = "upload-item";
  item.dataset.filename = file.name;
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = file.name;
  const progress = document.createElement("progress");
  progress.max = 100;
  progress.value = 0;
  progress.setAttribute("aria-label", `Upload of ${file.name}`);
  const state = document.createElement("span");
  state.className = "state";
  state.textContent = "waiting";
  item.append(name, progress, state);
  el.uploadList.append(item);
  return {
    item,
    progress: (percent) => {
      progress.value = percent;
    },
    state: (text) => {
      state.textContent = text;
    },
    fail: (text) => {
      item.classList.add("failed");
      item.dataset.state = "failed";
      state.textContent = text;
    },
    done: (text) => {
      item.dataset.state = "done";
      state.textContent = text;
    },
  };
}

/** The text of an S3 XML error's <Message>, if any. */
function s3ErrorMessage(xml) {
  const match = /<Message>([^<]*)<\/Message>/.exec(xml || "");
  return match ? match[1] : null;
}

/** POST `file` to the presigned `upload` (every field, then the file); reports progress. */
function postToBucket(upload, file, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(upload.fields || {})) form.append(name, value);
    form.append(upload.file_field || "file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open(upload.method || "POST", upload.url);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable && event.total > 0) {
        onProgress(Math.min(100, Math.round((event.loaded / event.total) * 100)));
      }
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(100);
        resolve();
      } else {
        const detail = s3ErrorMessage(xhr.responseText) || xhr.statusText;
        reject(new ApiError(xhr.status, `${xhr.status}: storage refused the upload: ${detail}`));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, "network error while sending the file to storage"));
    xhr.send(form);
  });
}

/**
 * The record `complete` answered, or, when it answered 202 (the S3 event is still
 * processing the upload), the record once `GET /uploads/{id}` says ready: polled every
 * 3 s for at most 3 minutes (the processing lease).
 */
async function finished(id, answer) {
  for (let poll = 0; answer.status === "pending" && poll < 60; poll += 1) {
    await new Promise((resolve) => setTimeout(resolve, 3000));
    answer = await api("GET", `uploads/${id}`);
  }
  if (answer.status === "ready") return answer.image;
  if (answer.status === "rejected") throw new ApiError(400, answer.error.Message);
  if (answer.status) throw new ApiError(409, `upload ${answer.status}`);
  return answer;
}

async function uploadFile(file, row) {
  const start = { filename: file.name, size_bytes: file.size };
  // Only an image type is worth declaring: the service sniffs the bytes anyway, and an
  // unknown or non-image type is left for `complete` to judge (its 415 names it).
  if (file.type && file.type.startsWith("image/")) start.content_type = file.type;
  const title = el.uploadTitle.value.trim();
  if (title) start.title = title;
  const tags = parseTags(el.uploadTags.value);
  if (tags.length) start.tags = tags;
  if (AUTH_MODE === "none" && currentUser()) start.user_id = currentUser();
  try {
    row.state("starting");
    const started = await api("POST", "uploads", start);
    row.state("uploading");
    await postToBucket(started.upload, file, (percent) => {
      row.progress(percent);
      row.state(percent < 100 ? `uploading ${percent}%` : "processing");
    });
    const id = encodeURIComponent(started.upload_id);
    const record = await finished(id, await api("POST", `uploads/${id}/complete`));
    row.done(`uploaded: ${record.width}×${record.height}`);
    return record;
  } catch (error) {
    row.fail(error instanceof ApiError ? error.message : String(error));
    return null;
  }
}

/** Whether any listing filter is set (then a new image may not belong in the grid). */
function filtersActive() {
  const query = listingQuery(null);
  query.delete("limit");
  return query.toString() !== "";
}

/** Put a just-uploaded image first in an unfiltered grid (its view carries the URLs). */
async function showUploaded(record) {
  try {
    const view = await api("GET", `images/${encodeURIComponent(record.image_id)}`);
    if (gallery.records.has(view.image_id)) return;
    gallery.records.set(view.image_id, view);
    el.gallery.prepend(tileFor(view));
    showCount();
  } catch {
    // The next listing shows it.
  }
}

// Files dropped or chosen before "Acting as" was given (AUTH_MODE=none): every upload
// would be a 400 "user_id: missing", so they wait until the user says who they are.
let heldFiles = [];

function askForIdentity(count) {
  const note = $("identity-needed");
  note.textContent =
    `Type whom you are acting as first: uploads are saved under that user. ` +
    `${count} file(s) will upload once you do.`;
  note.hidden = false;
  el.actingAs.setAttribute("aria-invalid", "true");
  el.actingAs.setAttribute("aria-describedby", "identity-needed");
  el.actingAs.focus();
}

function uploadHeldFiles() {
  if (!currentUser()) return;
  $("identity-needed").hidden = true;
  el.actingAs.removeAttribute("aria-invalid");
  const files = heldFiles;
  heldFiles = [];
  if (files.length) uploadFiles(files);
}

async function uploadFiles(files) {
  const list = Array.from(files);
  if (!list.length) return;
  if (AUTH_MODE === "none" && !currentUser()) {
    heldFiles = heldFiles.concat(list);
    askForIdentity(heldFiles.length);
    return;
  }
  const rows = list.map((file) => uploadRow(file));
  const results = new Array(list.length).fill(null);
  const filtered = filtersActive();
  let next = 0;
  // A few at a time: every file's row shows "waiting" until its turn.
  async function worker() {
    while (next < list.length) {
      const index = next++;
      results[index] = await uploadFile(list[index], rows[index]);
      if (results[index] && !filtered) await showUploaded(results[index]);
    }
  }
  await Promise.all(Array.from({ length: Math.min(UPLOAD_CONCURRENCY, list.length) }, worker));
  if (filtered && results.some(Boolean)) await reloadGallery();
}

function setUpUpload() {
  const zone = el.dropZone;
  zone.addEventListener("click", () => el.fileInput.click());
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      el.fileInput.click();
    }
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    uploadFiles(event.dataTransfer ? event.dataTransfer.files : []);
  });
  el.fileInput.addEventListener("change", () => {
    const files = Array.from(el.fileInput.files || []);
    el.fileInput.value = "";
    uploadFiles(files);
  });
}

// ---- gallery ---------------------------------------------------------------------------

const gallery = { nextToken: null, exhausted: false, loading: null, generation: 0, records: new Map() };

function listingQuery(nextToken) {
  const query = new URLSearchParams();
  const form = new FormData(el.filters);
  const text = (name) => String(form.get(name) || "").trim();
  if (text("user_id")) query.set("user_id", text("user_id"));
  const tags = parseTags(text("tags"));
  if (tags.length === 1) query.set("tag", tags[0]);
  if (tags.length > 1) query.set("tags", tags.join(","));
  if (text("date_from")) query.set("date_from", text("date_from"));
  if (text("date_to")) query.set("date_to", text("date_to"));
  if (text("title")) query.set("title", text("title"));
  query.set("limit", String(PAGE_SIZE));
  if (nextToken) query.set("next_token", nextToken);
  return query;
}

/** Renditions smallest first, each with a URL. */
function renditionsOf(record) {
  return (Array.isArray(record.renditions) ? record.renditions : [])
    .filter((rendition) => rendition && rendition.url && rendition.width)
    .sort((a, b) => a.width - b.width);
}

function setImageSources(img, record, sizes) {
  const renditions = renditionsOf(record);
  if (renditions.length) {
    img.srcset = renditions.map((r) => `${r.url} ${r.width}w`).join(", ");
    img.sizes = sizes;
    img.src = renditions[0].url;
  } else if (record.url || record.download_url) {
    img.src = record.url || record.download_url;
  }
}

function altText(record) {
  return record.title || record.description || record.filename || "image";
}

function paintPlaceholder(container, canvas, record) {
  if (typeof record.dominant_color === "string" && /^#[0-9a-f]{6}$/i.test(record.dominant_color)) {
    container.style.backgroundColor = record.dominant_color;
  }
  canvas.hidden = !(record.placeholder && paint(canvas, record.placeholder));
}

function tileFor(record) {
  const item = document.createElement("li");
  const tile = document.createElement("button");
  tile.type = "button";
  tile.className = "tile";
  tile.dataset.imageId = record.image_id;
  const canvas = document.createElement("canvas");
  canvas.width = 32;
  canvas.height = 32;
  canvas.setAttribute("aria-hidden", "true");
  const img = document.createElement("img");
  img.alt = altText(record);
  img.loading = "lazy";
  img.decoding = "async";
  img.addEventListener("load", () => img.classList.add("loaded"));
  const caption = document.createElement("span");
  caption.className = "caption";
  caption.textContent = record.title || record.filename || "";
  tile.append(canvas, img, caption);
  paintPlaceholder(tile, canvas, record);
  setImageSources(img, record, TILE_SIZES);
  tile.addEventListener("click", () => openDetail(record));
  item.append(tile);
  return item;
}

function showCount() {
  const shown = gallery.records.size;
  el.status.textContent = shown
    ? `${shown} image${shown === 1 ? "" : "s"}${gallery.exhausted ? "" : ", scroll for more"}`
    : "No images match.";
}

async function loadNextPage() {
  if (gallery.loading || gallery.exhausted) return gallery.loading;
  if (AUTH_MODE !== "none" && !el.token.value.trim()) {
    el.status.textContent = "Paste a bearer token above to see the gallery.";
    return null;
  }
  const generation = gallery.generation;
  gallery.loading = (async () => {
    el.status.textContent = "Loading…";
    try {
      const page = await api("GET", `images?${listingQuery(gallery.nextToken)}`);
      if (generation !== gallery.generation) return;
      for (const record of page.items || []) {
        if (gallery.records.has(record.image_id)) continue;
        gallery.records.set(record.image_id, record);
        el.gallery.append(tileFor(record));
      }
      gallery.nextToken = page.next_token || null;
      gallery.exhausted = !gallery.nextToken;
      showCount();
    } catch (error) {
      if (generation === gallery.generation) el.status.textContent = error.message;
      gallery.exhausted = true;
    } finally {
      if (generation === gallery.generation) gallery.loading = null;
    }
    // Observing again reports at once whether the sentinel is still on screen, so a
    // page that does not fill the viewport loads the next one without any scrolling.
    observer.unobserve(el.sentinel);
    observer.observe(el.sentinel);
  })();
  return gallery.loading;
}

const observer = new IntersectionObserver(
  (entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadNextPage();
  },
  { rootMargin: "0px 0px 200px 0px" },
);

async function reloadGallery() {
  gallery.generation += 1;
  gallery.nextToken = null;
  gallery.exhausted = false;
  gallery.loading = null;
  gallery.records.clear();
  el.gallery.replaceChildren();
  await loadNextPage();
}

const FILTER_NAMES = ["user_id", "tags", "date_from", "date_to", "title"];

/** Fill the filter form from the page's own query (?user_id=...&tag=...): a filtered
 * gallery can be bookmarked or shared. */
function filtersFromLocation() {
  for (const name of FILTER_NAMES) {
    const value = name === "tags" ? params.get("tags") || params.get("tag") : params.get(name);
    if (value) el.filters.elements.namedItem(name).value = value;
  }
}

/** Mirror the applied filters in the address bar (keeping ?limit). */
function filtersToLocation() {
  const query = listingQuery(null);
  query.delete("limit");
  if (params.has("limit")) query.set("limit", String(PAGE_SIZE));
  const search = query.toString();
  history.replaceState(null, "", search ? `?${search}` : window.location.pathname);
}

function setUpFilters() {
  filtersFromLocation();
  el.filters.addEventListener("submit", (event) => {
    event.preventDefault();
    filtersToLocation();
    reloadGallery();
  });
  el.filters.addEventListener("reset", () => {
    // The form clears its inputs after this event.
    setTimeout(() => {
      filtersToLocation();
      reloadGallery();
    }, 0);
  });
}

// ---- detail ----------------------------------------------------------------------------

let detailRecord = null;

function formatBytes(bytes) {
  if (typeof bytes !== "number") return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

function fact(list, term, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = String(value);
  list.append(dt, dd);
}

/** Show `summary` (the listing's record) at once, then the full view when it comes. */
async function openDetail(summary) {
  const imageId = summary.image_id;
  $("detail-edit").hidden = true;
  showDetail(summary, null);
  try {
    const record = await api("GET", `images/${encodeURIComponent(imageId)}`);
    if (detailRecord && detailRecord.image_id === imageId) showDetail(record, null);
  } catch (error) {
    if (detailRecord && detailRecord.image_id === imageId) showDetail(summary, error.message);
  }
}

function showDetail(record, error) {
  if (!record) return;
  detailRecord = record;
  $("detail-title").textContent = record.title || record.filename || "Untitled";
  $("detail-description").textContent = record.description || "";
  const tags = $("detail-tags");
  tags.replaceChildren(
    ...(record.tags || []).map((tag) => {
      const li = document.createElement("li");
      li.textContent = tag;
      return li;
    }),
  );
  const facts = $("detail-facts");
  facts.replaceChildren();
  fact(facts, "Owner", record.user_id);
  fact(facts, "File", record.filename);
  fact(facts, "Size", formatBytes(record.size_bytes));
  if (record.width && record.height) fact(facts, "Dimensions", `${record.width} × ${record.height} px`);
  fact(facts, "Type", record.content_type);
  fact(facts, "Taken", record.taken_at);
  fact(facts, "Uploaded", record.created_at);
  if (record.version > 1) fact(facts, "Edited", record.updated_at);
  $("detail-error").textContent = error || "";
  const img = $("detail-img");
  if (img.dataset.imageId !== record.image_id) {
    img.classList.remove("loaded");
    img.removeAttribute("srcset");
    img.removeAttribute("src");
    img.dataset.imageId = record.image_id;
    img.onload = () => img.classList.add("loaded");
    paintPlaceholder(img.parentElement, $("detail-placeholder"), record);
    setImageSources(img, record, "(max-width: 700px) 96vw, 576px");
  }
  img.alt = altText(record);
  const user = currentUser();
  const owner = Boolean(user && user === record.user_id);
  $("detail-delete").hidden = !owner;
  $("detail-edit-open").hidden = !owner || !$("detail-edit").hidden;
  if (!owner) $("detail-edit").hidden = true;
  if (!el.dialog.open) el.dialog.showModal();
}

// ---- edit (owner) ----------------------------------------------------------------------

function openEdit() {
  if (!detailRecord) return;
  $("edit-title").value = detailRecord.title || "";
  $("edit-description").value = detailRecord.description || "";
  $("edit-tags").value = (detailRecord.tags || []).join(", ");
  $("detail-edit").hidden = false;
  $("detail-edit-open").hidden = true;
  $("detail-error").textContent = "";
  $("edit-title").focus();
}

function closeEdit() {
  $("detail-edit").hidden = true;
  $("detail-edit-open").hidden = !(detailRecord && currentUser() === detailRecord.user_id);
}

/** PATCH the fields, only if the image is still the version this view read (its ETag is
 * the record's `version`, quoted): someone else's edit since is the API's 412, shown. */
async function saveEdit(event) {
  event.preventDefault();
  if (!detailRecord) return;
  const before = detailRecord;
  const changes = {
    title: $("edit-title").value,
    description: $("edit-description").value,
    tags: parseTags($("edit-tags").value),
  };
  $("edit-save").disabled = true;
  try {
    const edited = await api("PATCH", `images/${encodeURIComponent(before.image_id)}`, changes, {
      "If-Match": `"${before.version}"`,
    });
    // The answer has no presigned URLs: keep the ones this view already has.
    const record = { ...before, ...edited, renditions: before.renditions };
    if (gallery.records.has(record.image_id)) {
      const listed = gallery.records.get(record.image_id);
      const updated = { ...listed, ...edited, renditions: listed.renditions };
      gallery.records.set(record.image_id, updated);
      const tile = el.gallery.querySelector(`[data-image-id="${CSS.escape(record.image_id)}"]`);
      if (tile) tile.closest("li").replaceWith(tileFor(updated));
    }
    closeEdit();
    showDetail(record, null);
  } catch (error) {
    $("detail-error").textContent = error instanceof ApiError ? error.message : String(error);
  } finally {
    $("edit-save").disabled = false;
  }
}

function closeDetail() {
  if (el.dialog.open) el.dialog.close();
}

async function downloadDetail() {
  if (!detailRecord) return;
  try {
    const view = await api("GET", `images/${encodeURIComponent(detailRecord.image_id)}?download=true`);
    const link = document.createElement("a");
    link.href = view.download_url;
    link.download = view.filename || "";
    link.rel = "noopener";
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    $("detail-error").textContent = error.message;
  }
}

async function deleteDetail() {
  if (!detailRecord) return;
  const imageId = detailRecord.image_id;
  try {
    await api("DELETE", `images/${encodeURIComponent(imageId)}`);
    gallery.records.delete(imageId);
    const tile = el.gallery.querySelector(`[data-image-id="${CSS.escape(imageId)}"]`);
    if (tile) tile.closest("li").remove();
    closeDetail();
    showCount();
  } catch (error) {
    $("detail-error").textContent = error.message;
  }
}

function setUpDetail() {
  $("detail-close").addEventListener("click", closeDetail);
  $("detail-download").addEventListener("click", downloadDetail);
  $("detail-delete").addEventListener("click", deleteDetail);
  $("detail-edit-open").addEventListener("click", openEdit);
  $("edit-cancel").addEventListener("click", closeEdit);
  $("detail-edit").addEventListener("submit", saveEdit);
  // A click on the backdrop (outside the dialog's box) closes it; Escape does natively.
  el.dialog.addEventListener("click", (event) => {
    if (event.target === el.dialog) closeDetail();
  });
  el.dialog.addEventListener("close", () => {
    const tile = detailRecord
      ? el.gallery.querySelector(`[data-image-id="${CSS.escape(detailRecord.image_id)}"]`)
      : null;
    if (tile) tile.focus();
  });
}

// ---- start -----------------------------------------------------------------------------

setUpIdentity();
setUpUpload();
setUpFilters();
setUpDetail();
body.dataset.ready = "true";
// The first page loads at once; each later one when the sentinel nears the viewport.
loadNextPage();
