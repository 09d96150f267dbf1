// The bale console: sign in, buckets, objects (prefix navigation), upload, download, delete,
// and the live panel (metrics.js). Every S3 request is signed here (sigv4.js) and sent to
// /api/s3/..., which the console listener forwards to the S3 port unchanged.
"use strict";

const $ = (id) => document.getElementById(id);
const API = "/api/s3";
const CRED_KEY = "bale.console.cred";
const REGION = document.querySelector('meta[name="bale-region"]').content || "us-east-1";
const LIST_PAGE_KEYS = 1000;
const DOWNLOAD_LINK_EXPIRES_S = 300;
const METRICS_EVERY_MS = 1000;

const state = { cred: null, bucket: null, prefix: "", token: null, stopMetrics: null };

class S3Error extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The S3 error of a failed answer (its XML Code and Message, or the HTTP status). */
async function s3Error(resp) {
  const raw = await resp.text().catch(() => "");
  const doc = raw ? new DOMParser().parseFromString(raw, "application/xml") : null;
  const field = (n) => doc && doc.getElementsByTagName(n)[0] ? doc.getElementsByTagName(n)[0].textContent : "";
  const code = field("Code") || `HTTP ${resp.status}`;
  const message = field("Message") || resp.statusText || "request failed";
  return new S3Error(resp.status, code, message);
}

/** One signed S3 request. `body` (a File or Blob) makes it an upload with an unsigned payload. */
async function s3(method, bucket, key, params, body) {
  const path = BaleSig.s3Path(bucket, key);
  const signed = BaleSig.sign(state.cred, method, path, params, body === undefined ? "empty" : "unsigned", location.host);
  const headers = Object.assign({}, signed.headers);
  if (body !== undefined) headers["content-type"] = body.type || "application/octet-stream";
  let resp;
  try {
    resp = await fetch(API + path + (signed.query ? "?" + signed.query : ""), {
      method, headers, body, cache: "no-store", credentials: "omit", redirect: "error",
    });
  } catch (e) {
    throw new S3Error(0, "NetworkError", "the console did not answer (" + e.message + ")");
  }
  if (!resp.ok) throw await s3Error(resp);
  return resp;
}

async function s3Xml(method, bucket, key, params) {
  const resp = await s3(method, bucket, key, params);
  return new DOMParser().parseFromString(await resp.text(), "application/xml");
}

const tags = (node, name) => Array.from(node.getElementsByTagName(name));
const text = (node, name) => (node.getElementsByTagName(name)[0] || { textContent: "" }).textContent;

// ---- small view helpers ----

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) e.append(c);
  return e;
}

function setStatus(msg) { $("status").textContent = msg; }

function showError(e) {
  const box = $("error");
  box.textContent = e ? (e.code ? e.code + ": " : "") + e.message : "";
  box.hidden = !e;
}

function humanSize(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** "2026-01-02 03:04:05" (UTC) from an S3 timestamp. */
function shortDate(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

/** Runs an action with a status line and errors shown on the page. */
async function act(label, fn) {
  showError(null);
  setStatus(label + "…");
  try {
    await fn();
    setStatus("");
  } catch (e) {
    setStatus("");
    showError(e);
  }
}

// ---- sign in ----

async function signIn(accessKey, secretKey) {
  state.cred = { accessKey, secretKey, region: REGION };
  try {
    await s3("GET"); // ListBuckets proves the key
  } catch (e) {
    state.cred = null;
    throw e;
  }
  sessionStorage.setItem(CRED_KEY, JSON.stringify({ accessKey, secretKey }));
  enterApp();
}

function enterApp() {
  $("signin-view").hidden = true;
  $("app-view").hidden = false;
  $("who").textContent = state.cred.accessKey;
  $("signout").hidden = false;
  openBuckets();
  const numbers = {
    getRate: $("m-get-rate"), getP50: $("m-get-p50"), getP99: $("m-get-p99"),
    putRate: $("m-put-rate"), putP50: $("m-put-p50"), putP99: $("m-put-p99"),
  };
  state.stopMetrics = BaleMetrics.start(
    async () => (await s3("GET", "metrics")).text(),
    { rateCanvas: $("rate-chart"), latencyCanvas: $("latency-chart"), numbers },
    (msg, isError) => { $("m-state").textContent = msg; $("m-state").classList.toggle("bad", isError); },
    METRICS_EVERY_MS,
  );
}

function signOut() {
  sessionStorage.removeItem(CRED_KEY);
  if (state.stopMetrics) state.stopMetrics();
  Object.assign(state, { cred: null, bucket: null, prefix: "", token: null, stopMetrics: null });
  $("app-view").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  $("secret-key").value = "";
  $("signin-view").hidden = false;
}

// ---- buckets ----

function crumbs() {
  const nav = $("crumbs");
  nav.replaceChildren();
  const link = (label, onclick) => el("button", { className: "link", type: "button", textContent: label, onclick });
  nav.append(link("Buckets", openBuckets));
  if (!state.bucket) return;
  nav.append(el("span", { className: "sep", textContent: "/" }), link(state.bucket, () => openPrefix(state.bucket, "")));
  let acc = "";
  for (const part of state.prefix.split("/").filter((p) => p !== "")) {
    acc += part + "/";
    const to = acc;
    nav.append(el("span", { className: "sep", textContent: "/" }), link(part, () => openPrefix(state.bucket, to)));
  }
}

function openBuckets() {
  Object.assign(state, { bucket: null, prefix: "", token: null });
  $("bucket-pane").hidden = false;
  $("object-pane").hidden = true;
  crumbs();
  return act("Listing buckets", async () => {
    const doc = await s3Xml("GET");
    const body = $("buckets").tBodies[0];
    body.replaceChildren();
    for (const b of tags(doc, "Bucket")) {
      const name = text(b, "Name");
      const row = el("tr", {},
        el("td", {}, el("button", { className: "link", type: "button", textContent: name, onclick: () => openPrefix(name, "") })),
        el("td", { textContent: shortDate(text(b, "CreationDate")) }));
      row.dataset.bucket = name;
      body.append(row);
    }
    $("no-buckets").hidden = body.rows.length > 0;
  });
}

function createBucket(name) {
  return act("Creating " + name, async () => {
    await s3("PUT", name);
    $("new-bucket").value = "";
    await openBuckets();
  });
}

/** DeleteBucket: the S3 port refuses a bucket that still holds objects (BucketNotEmpty). */
function deleteBucket(name) {
  if (!confirm(`Delete bucket ${name}?`)) return Promise.resolve();
  return act("Deleting bucket " + name, async () => {
    await s3("DELETE", name);
    await openBuckets();
    setStatus("Deleted bucket " + name);
  });
}

// ---- objects ----

function openPrefix(bucket, prefix) {
  Object.assign(state, { bucket, prefix, token: null });
  $("bucket-pane").hidden = true;
  $("object-pane").hidden = false;
  $("objects").tBodies[0].replaceChildren();
  crumbs();
  return listPage();
}

function listPage() {
  return act("Listing " + state.bucket + "/" + state.prefix, async () => {
    const params = [["list-type", "2"], ["delimiter", "/"], ["max-keys", String(LIST_PAGE_KEYS)]];
    if (state.prefix) params.push(["prefix", state.prefix]);
    if (state.token) params.push(["continuation-token", state.token]);
    const doc = await s3Xml("GET", state.bucket, undefined, params);
    const body = $("objects").tBodies[0];
    if (!state.token) body.replaceChildren();
    for (const p of tags(doc, "CommonPrefixes")) body.append(folderRow(text(p, "Prefix")));
    for (const c of tags(doc, "Contents")) {
      const key = text(c, "Key");
      if (key === state.prefix) continue; // the folder's own marker object
      body.append(objectRow(key, Number(text(c, "Size")), text(c, "LastModified")));
    }
    const truncated = text(doc, "IsTruncated") === "true";
    state.token = truncated ? text(doc, "NextContinuationToken") : null;
    $("more-btn").hidden = !truncated;
    $("no-objects").hidden = body.rows.length > 0;
  });
}

function folderRow(prefix) {
  const name = prefix.slice(state.prefix.length);
  const row = el("tr", { className: "folder" },
    el("td", {}, el("button", { className: "link", type: "button", textContent: name, onclick: () => openPrefix(state.bucket, prefix) })),
    el("td", { className: "num", textContent: "" }), el("td"), el("td"));
  row.dataset.prefix = prefix;
  return row;
}

function objectRow(key, size, modified) {
  const size_cell = el("td", { className: "num size", textContent: humanSize(size), title: `${size} bytes` });
  size_cell.dataset.bytes = String(size);
  const row = el("tr", { className: "object" },
    el("td", { className: "name", textContent: key.slice(state.prefix.length) }),
    size_cell,
    el("td", { textContent: shortDate(modified) }),
    el("td", { className: "actions" },
      el("button", { className: "ghost download", type: "button", textContent: "Download", onclick: () => download(key) }),
      el("button", { className: "danger delete", type: "button", textContent: "Delete", onclick: () => removeObject(key) })));
  row.dataset.key = key;
  return row;
}

/** Downloads through a short-lived presigned link, so the browser streams it to disk. */
function download(key) {
  const path = BaleSig.s3Path(state.bucket, key);
  const query = BaleSig.presign(state.cred, "GET", path, [], location.host, DOWNLOAD_LINK_EXPIRES_S);
  const a = el("a", { href: API + path + "?" + query, download: key.split("/").pop() || "download" });
  document.body.append(a);
  a.click();
  a.remove();
}

function removeObject(key) {
  if (!confirm(`Delete ${state.bucket}/${key}?`)) return Promise.resolve();
  return act("Deleting " + key, async () => {
    await s3("DELETE", state.bucket, key);
    state.token = null;
    await listPage();
    setStatus("Deleted " + key);
  });
}

function upload(files) {
  return act("Uploading", async () => {
    for (const f of files) {
      setStatus(`Uploading ${f.name} (${humanSize(f.size)})…`);
      await s3("PUT", state.bucket, state.prefix + f.name, [], f);
    }
    $("upload-file").value = "";
    state.token = null;
    await listPage();
    setStatus(`Uploaded ${files.length} file${files.length === 1 ? "" : "s"}`);
  });
}

// ---- wiring ----

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const err = $("signin-error");
    err.hidden = true;
    $("signin-btn").disabled = true;
    try {
      await signIn($("access-key").value.trim(), $("secret-key").value);
    } catch (e) {
      err.textContent = (e.code ? e.code + ": " : "") + e.message;
      err.hidden = false;
    } finally {
      $("signin-btn").disabled = false;
    }
  });
  $("signout").addEventListener("click", signOut);
  $("create-bucket-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    createBucket($("new-bucket").value.trim());
  });
  $("upload-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const files = Array.from($("upload-file").files);
    if (files.length === 0) showError({ code: "", message: "Choose a file to upload first." });
    else upload(files);
  });
  $("refresh-btn").addEventListener("click", () => openPrefix(state.bucket, state.prefix));
  $("more-btn").addEventListener("click", listPage);
  $("delete-bucket-btn").addEventListener("click", () => deleteBucket(state.bucket));

  try {
    const saved = JSON.parse(sessionStorage.getItem(CRED_KEY) || "null");
    if (saved && saved.accessKey && saved.secretKey) {
      state.cred = { accessKey: saved.accessKey, secretKey: saved.secretKey, region: REGION };
      enterApp();
    }
  } catch (_) {
    sessionStorage.removeItem(CRED_KEY);
  }
});
