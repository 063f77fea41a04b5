// The typing page: suggestions from POST /predict_next follow the text box, and
// POST /generate continues a prompt. No build step, nothing fetched from elsewhere.
// A server with an API key answers 401: the page then asks the person for the key,
// keeps it in this tab's sessionStorage (gone when the tab closes) and sends it as a bearer token.
"use strict";

const DEBOUNCE_MS = 60;   // one request per pause in typing, short enough to feel instant
const TOP_K = 5;
// Only the text's end is read: the page keeps suggesting however long the text grows, and a
// keystroke costs the same at word 5,000 as at word 5 (docs/api.md, truncate).
const READ_LAST_TOKENS = 128;

const typing = document.getElementById("typing");
const list = document.getElementById("suggestions");
const status = document.getElementById("typing-status");

let shown = { fragment: null, predictions: [] };  // what the list shows now, for Tab and clicks
// The words shown earlier for the word being typed: a person who typed past them wants another,
// so they are sent as exclude and their slots go to the next likeliest words (docs/api.md).
let passed = { wordStart: null, fragment: "", tokens: [] };
const MAX_PASSED = 100;  // the API's bound on exclude
let latest = 0;                             // the newest request: older answers are stale
let pending = null;                         // its AbortController
let timer = null;

// One session key per tab, sent as X-Session-ID: behind a proxy that hashes it, all of a person's
// requests reach the replica that holds their text's cached state (docs/operations.md).
const SESSION_ITEM = "nextword-session-id";
const session = sessionStorage.getItem(SESSION_ITEM) || newSessionId();
sessionStorage.setItem(SESSION_ITEM, session);

function newSessionId() {  // crypto.randomUUID needs a secure context; this works over plain http too
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const KEY_ITEM = "nextword-api-key";
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("api-key");

async function postJSON(path, inputs, signal) {
  const headers = { "content-type": "application/json", "x-session-id": session };
  const key = sessionStorage.getItem(KEY_ITEM);
  if (key) headers.authorization = `Bearer ${key}`;
  const response = await fetch(path, { method: "POST", headers, body: JSON.stringify({ inputs }), signal });
  const body = await response.json();
  if (response.status === 401) {
    keyForm.hidden = false;
    if (!keyInput.value) keyInput.focus();
  }
  if (!response.ok) {
    throw new Error(body.error || `HTTP ${response.status}`);
  }
  return body;
}

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_ITEM, keyInput.value.trim());
  keyInput.value = "";
  keyForm.hidden = true;
  typing.focus();
  schedule(0);  // ask again with the key; a wrong one brings the form back
});

function schedule(delay) {
  clearTimeout(timer);
  timer = setTimeout(suggest, delay);
}

async function suggest() {
  const text = typing.value;
  const ticket = ++latest;
  if (pending) pending.abort();
  pending = new AbortController();
  try {
    const exclude = passedOver(text);
    const ask = { text, top_k: TOP_K, complete: true, truncate: READ_LAST_TOKENS, exclude };
    const [answer] = await postJSON("/predict_next", [ask], pending.signal);
    if (ticket === latest) {
      render(answer);
      remember(text, answer);
    }
  } catch (error) {
    if (ticket === latest && error.name !== "AbortError") {
      status.textContent = `no suggestions: ${error.message}`;
    }
  }
}

// The text before the word being typed: the word's identity while its letters change.
function wordStartOf(text) {
  const match = /[\p{L}\p{N}'\u2019]*$/u.exec(text);
  return text.slice(0, text.length - match[0].length);
}

// The words to leave out of this keystroke's answer: those shown for the same word at its earlier
// letters. Going back (a deleted letter) or on to another word starts afresh.
function passedOver(text) {
  const wordStart = wordStartOf(text);
  const fragment = text.slice(wordStart.length);
  if (wordStart !== passed.wordStart || !fragment.startsWith(passed.fragment) || fragment === passed.fragment) {
    return [];
  }
  return passed.tokens;
}

function remember(text, answer) {
  const wordStart = wordStartOf(text);
  const fragment = text.slice(wordStart.length);
  const earlier = passedOver(text);
  const tokens = [...earlier, ...answer.predictions.map((p) => p.token)];
  passed = { wordStart, fragment, tokens: tokens.slice(-MAX_PASSED) };
}

function render(answer) {
  shown = { fragment: answer.fragment, predictions: answer.predictions };
  if (answer.fragment === null) {
    const lineBreak = (100 * answer.line_break_probability).toPrecision(2);
    status.textContent = `next word (a line break: ${lineBreak}%)`;
  } else if (answer.matching_words === null) {
    status.textContent = `completing "${answer.fragment}"`; // a character-level model: no word list to count
  } else if (answer.matching_words === 0) {
    status.textContent = `no word starts with "${answer.fragment}"`;
  } else {
    const share = (100 * answer.matching_probability).toPrecision(2);
    status.textContent = `completing "${answer.fragment}": ${answer.matching_words} words, ${share}% of the model's probability`;
  }
  if (answer.truncated) status.textContent += ` (reading the last ${READ_LAST_TOKENS} words)`;
  const top = answer.predictions.length ? answer.predictions[0].probability : 1;
  list.replaceChildren(...answer.predictions.map((p) => item(p, top)));
}

function item(prediction, top) {
  const li = document.createElement("li");
  li.dataset.word = prediction.word;
  // A word one slip away from what was typed (correct_typos): marked, and taken as any completion.
  if (prediction.correction) li.classList.add("correction");
  const button = document.createElement("button");
  button.type = "button";
  const word = document.createElement("span");
  word.className = "word";
  word.textContent = prediction.word;
  const bar = document.createElement("span");
  bar.className = "bar";
  const fill = document.createElement("span");
  fill.style.width = `${(100 * prediction.probability) / top}%`;
  bar.append(fill);
  const probability = document.createElement("span");
  probability.className = "probability";
  probability.textContent = `${(100 * prediction.probability).toFixed(1)}%`;
  button.append(word, bar, probability);
  button.addEventListener("click", () => {
    accept(prediction);
    typing.focus();
  });
  li.append(button);
  return li;
}

// Put the word in place of the fragment being completed (or after the text), joined as the server
// says: no space before a word that joins the one before it (a hyphen, 's, a comma), and a space
// after it unless the next word joins it.
function accept(prediction) {
  let text = typing.value;
  if (shown.fragment !== null) {
    text = text.slice(0, text.length - shown.fragment.length);
  }
  if (prediction.joins_previous) text = text.trimEnd();
  text += prediction.word + (prediction.joins_next ? "" : " ");
  typing.value = text;
  typing.setSelectionRange(text.length, text.length);
  shown = { fragment: null, predictions: [] };
  schedule(0);
}

typing.addEventListener("input", () => schedule(DEBOUNCE_MS));
typing.addEventListener("keydown", (event) => {
  if (event.key === "Tab" && !event.shiftKey && shown.predictions.length) {
    event.preventDefault();
    accept(shown.predictions[0]);
  }
});

// The second box: continue a prompt with /generate.
const form = document.getElementById("generate-form");
const continuation = document.getElementById("continuation");
let latestGeneration = 0;

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const prompt = document.getElementById("prompt").value;
  const ticket = ++latestGeneration;
  continuation.textContent = "…";
  try {
    const [answer] = await postJSON("/generate", [{
      prompt,
      max_new_tokens: Number(document.getElementById("max-new-tokens").value),
      temperature: Number(document.getElementById("temperature").value),
    }]);
    if (ticket !== latestGeneration) return;
    const generated = document.createElement("span");
    generated.className = "generated";
    generated.textContent = answer.text;  // what follows the prompt, its joining space included
    continuation.replaceChildren(prompt, generated);
  } catch (error) {
    if (ticket === latestGeneration) continuation.textContent = `error: ${error.message}`;
  }
});

schedule(0);
