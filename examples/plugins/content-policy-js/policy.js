// A content policy in JavaScript, at `data`. It reads the Subject and the decoded text parts
// through the host's MIME access (nothing is parsed here), rejects a message containing one of
// `reject_phrases` with `550 5.7.1`, and tags a message whose subject holds one of
// `spam_subject_words` with a header (`tag_header: tag_value`) before it is queued.
//
// Build (from this folder, after `npm ci` in examples/plugins):
//   npm run build            # = componentize-js ... policy.js -o content-policy.wasm
// Load (relay.toml):
//   [[plugins]]
//   path = "examples/plugins/content-policy-js/content-policy.wasm"
//   instances = "pooled"
//   config = { reject_phrases = ["wire the money today"], spam_subject_words = ["lottery", "winner"] }
// Try (rejected with 550 5.7.1):
//   swaks --server 127.0.0.1:2525 --from a@example.org --to b@example.com --body "Please wire the money today"

import { log } from "wasmrelay:plugin/host@0.2.9";

const DEFAULTS = {
  // Phrases (case-insensitive, any run of white space matching any other) that refuse a message.
  reject_phrases: [],
  // Words or phrases that mark a subject as spammy.
  spam_subject_words: ["lottery", "winner", "free money", "act now", "viagra"],
  // The header added to a message with a spammy subject, and its value.
  tag_header: "X-Spam-Flag",
  tag_value: "YES",
  // How many decoded bytes of each text part are scanned (a larger part is scanned in part).
  max_scan_bytes: 1048576,
};

let settings = null;

// Lower case, every run of white space one space: for the configured phrases and the subject,
// which are short. Long texts are not rewritten: see `containsPhrase`.
function normalize(text) {
  return text.toLowerCase().replace(/\s+/g, " ");
}

// Every character JavaScript's `\s` matches.
const WHITE_SPACE = new Set(
  " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff",
);

// Whether `text` (lower case) holds the words of `phrase` (normalized) in order, separated by
// runs of white space. The engine's regular expressions and string functions written in JS
// run interpreted inside Wasm (a `/\s+/g` replace over a 2 KB message cost about 400 µs);
// `indexOf` and `startsWith` are native, so the text is searched for the first word and only
// its occurrences are looked at one character at a time.
function containsPhrase(text, phrase) {
  const words = phrase.split(" ");
  for (let at = text.indexOf(words[0]); at >= 0; at = text.indexOf(words[0], at + 1)) {
    let i = at + words[0].length;
    let k = 1;
    for (; k < words.length; k++) {
      const gap = i;
      while (i < text.length && WHITE_SPACE.has(text[i])) {
        i++;
      }
      if (i === gap || !text.startsWith(words[k], i)) {
        break;
      }
      i += words[k].length;
    }
    if (k === words.length) {
      return true;
    }
  }
  return false;
}

function stringList(value, key) {
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string" && v.trim() !== "")) {
    throw `\`${key}\`: expected a list of non-empty strings`;
  }
  return value.map((v) => normalize(v.trim()));
}

function configure(json) {
  const given = JSON.parse(json);
  for (const key of Object.keys(given)) {
    if (!(key in DEFAULTS)) {
      throw `unknown key \`${key}\` (known: ${Object.keys(DEFAULTS).join(", ")})`;
    }
  }
  const merged = { ...DEFAULTS, ...given };
  if (!/^[A-Za-z0-9-]{1,64}$/.test(merged.tag_header)) {
    throw "`tag_header`: expected a header name (letters, digits and -)";
  }
  if (typeof merged.tag_value !== "string" || /[\r\n]/.test(merged.tag_value)) {
    throw "`tag_value`: expected one line of text";
  }
  if (!Number.isInteger(merged.max_scan_bytes) || merged.max_scan_bytes < 1) {
    throw "`max_scan_bytes`: expected a positive integer";
  }
  return {
    rejectPhrases: stringList(merged.reject_phrases, "reject_phrases"),
    spamSubjectWords: stringList(merged.spam_subject_words, "spam_subject_words"),
    tagHeader: merged.tag_header,
    tagValue: merged.tag_value,
    maxScanBytes: merged.max_scan_bytes,
  };
}

const utf8 = new TextDecoder("utf-8");

function decodeBytes(bytes, charset) {
  if (/^(us-ascii|iso-8859-1|latin1|windows-1252)$/i.test(charset)) {
    return String.fromCharCode(...bytes);
  }
  return utf8.decode(bytes);
}

// RFC 2047 encoded words, so `=?utf-8?B?...?=` cannot hide a subject from the check.
function decodeEncodedWords(value) {
  return value.replace(/=\?([^?]+)\?([bBqQ])\?([^?]*)\?=/g, (word, charset, encoding, text) => {
    try {
      let bytes;
      if (encoding.toLowerCase() === "b") {
        const binary = atob(text);
        bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
      } else {
        const raw = text.replace(/_/g, " ").replace(/=([0-9A-Fa-f]{2})/g, (_, hex) =>
          String.fromCharCode(parseInt(hex, 16)),
        );
        bytes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
      }
      return decodeBytes(bytes, charset.split("*")[0]);
    } catch {
      return word;
    }
  });
}

// The decoded text of a text part, at most `maxScanBytes` of it.
function partText(msg, part) {
  if (part.size <= BigInt(settings.maxScanBytes)) {
    try {
      return msg.partText(part.id);
    } catch {
      // too large for a string, or not text after all: read a prefix instead
    }
  }
  try {
    const bytes = msg.readPart(part.id, 0n, settings.maxScanBytes);
    return decodeBytes(bytes, part.charset ?? "utf-8");
  } catch {
    return "";
  }
}

function scannedTexts(msg) {
  const texts = msg.header("subject").map(decodeEncodedWords);
  for (const part of msg.parts()) {
    if (!part.contentType.startsWith("text/") || part.disposition === "attachment") {
      continue;
    }
    let text = partText(msg, part);
    if (part.contentType === "text/html") {
      text = text.replace(/<[^>]*>/g, " ").replace(/&nbsp;/gi, " ");
    }
    texts.push(text);
  }
  return texts.map((text) => text.toLowerCase());
}

const CONTINUE = { tag: "continue" };

export const hooks = {
  init(config) {
    settings = configure(config);
  },

  hooks() {
    return ["data"];
  },

  data(ctx, msg) {
    const texts = scannedTexts(msg);
    for (const phrase of settings.rejectPhrases) {
      if (texts.some((text) => containsPhrase(text, phrase))) {
        log("info", `refused: the message contains a refused phrase (session ${ctx.sessionId()})`);
        return {
          tag: "reject",
          val: {
            code: 550,
            enhanced: { class: 5, subject: 7, detail: 1 },
            text: "Message content refused by policy",
          },
        };
      }
    }
    const subject = normalize(msg.header("subject").map(decodeEncodedWords).join(" "));
    if (settings.spamSubjectWords.some((word) => subject.includes(word))) {
      msg.replaceHeader(settings.tagHeader, settings.tagValue);
    }
    return CONTINUE;
  },

  // The hooks this plugin does not handle (never called: `hooks()` does not list them).
  connect: () => CONTINUE,
  helo: () => CONTINUE,
  auth: () => CONTINUE,
  mailFrom: () => CONTINUE,
  rcpt: () => CONTINUE,
  queued: () => {},
  closed: () => {},
  route: () => ({ tag: "continue" }),
  recipientCopy: () => CONTINUE,
  deliveryResult: () => {},
};
