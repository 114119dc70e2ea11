// The "base subject" of RFC 5256 2.1: what SORT SUBJECT and THREAD compare once reply and
// forward markers, list tags ("[blob]") and whitespace differences are taken away.
import { decodeWords } from '../store/message-parse.js';

export interface BaseSubject {
  /** The base subject, ASCII letters upper-cased (i;ascii-casemap), '' when there is none. */
  key: string;
  /** Whether a Re:/Fwd: leader, a "(fwd)" trailer or "[fwd: ...]" was removed (THREAD 6.C). */
  replyOrForward: boolean;
}

const TRAILER = /(?:[ \t]|\(fwd\))$/i;
// subj-leader: (*subj-blob subj-refwd) / WSP, with subj-refwd = ("re" / "fw" ["d"]) *WSP [subj-blob] ":"
const REFWD = /^(?:\[[^[\]]*\][ \t]*)*(?:re|fwd?)[ \t]*(?:\[[^[\]]*\][ \t]*)?:/i;
const BLOB = /^\[[^[\]]*\][ \t]*/;

function asciiUpper(s: string): string {
  return s.replace(/[a-z]+/g, (m) => m.toUpperCase());
}

/** RFC 5256 2.1 on a raw Subject field value (encoded words are decoded first). */
export function baseSubject(raw: string | null | undefined): BaseSubject {
  // (1) decoded, tabs and folding to a space, runs of spaces to one
  let s = decodeWords(raw ?? '').replace(/\r?\n/g, '').replace(/[ \t]+/g, ' ');
  let replyOrForward = false;
  for (;;) {
    // (2) trailers: "(fwd)" and white space, repeatedly
    for (let m = TRAILER.exec(s); m; m = TRAILER.exec(s)) {
      if (m[0] !== ' ' && m[0] !== '\t') replyOrForward = true;
      s = s.slice(0, s.length - m[0].length);
    }
    // (3)-(5) leaders and leading blobs, until nothing changes
    for (let changed = true; changed; ) {
      changed = false;
      if (s.startsWith(' ') || s.startsWith('\t')) {
        s = s.slice(1);
        changed = true;
        continue;
      }
      const r = REFWD.exec(s);
      if (r) {
        s = s.slice(r[0].length);
        replyOrForward = true;
        changed = true;
        continue;
      }
      // (4) a leading blob goes if what remains is not empty
      const b = BLOB.exec(s);
      if (b && s.length > b[0].length) {
        s = s.slice(b[0].length);
        changed = true;
      }
    }
    // (6) "[fwd: ... ]" wrapping the whole subject
    if (/^\[fwd:/i.test(s) && s.endsWith(']')) {
      s = s.slice(5, -1);
      replyOrForward = true;
      continue;
    }
    break;
  }
  return { key: asciiUpper(s), replyOrForward };
}
