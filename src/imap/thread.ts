// THREAD (RFC 5256 3): ORDEREDSUBJECT and REFERENCES, and the THREAD response's nesting.
import { baseSubject } from './base-subject.js';
import type { SortFacts } from './sort.js';

export interface ThreadFacts extends SortFacts {
  /** Message-IDs of the References field in order (empty when it has none). */
  references: string[];
}

/** A thread node; `m` is null for a dummy (a message referred to but not in the set). */
export interface ThreadNode {
  m: ThreadFacts | null;
  children: ThreadNode[];
}

/** `<local@domain>` ids in a field value, in order. */
export function messageIds(value: string | null | undefined): string[] {
  return value ? [...value.matchAll(/<([^<>\s@]+@[^<>\s]+)>/g)].map((x) => x[1]!) : [];
}

/** Sent date, then sequence number (RFC 5256 2.2). */
function bySent(a: ThreadFacts, b: ThreadFacts): number {
  return a.sentDate - b.sentDate || a.seq - b.seq;
}

/** A node's date for ordering: its own, or (dummy) that of its first child once sorted. */
function firstMessage(n: ThreadNode): ThreadFacts {
  return n.m ?? firstMessage(n.children[0]!);
}

function sortSiblings(nodes: ThreadNode[]): void {
  for (const n of nodes) sortSiblings(n.children);
  nodes.sort((x, y) => bySent(firstMessage(x), firstMessage(y)));
}

/** ORDEREDSUBJECT: grouped by base subject, each group's first message the parent of the rest. */
export function threadOrderedSubject(messages: readonly ThreadFacts[]): ThreadNode[] {
  const sorted = messages
    .map((m) => ({ m, s: baseSubject(m.envelope.subject).key }))
    .sort((x, y) => (x.s < y.s ? -1 : x.s > y.s ? 1 : bySent(x.m, y.m)));
  const roots: ThreadNode[] = [];
  let current: { s: string; node: ThreadNode } | null = null;
  for (const { m, s } of sorted) {
    if (current && current.s === s) current.node.children.push({ m, children: [] });
    else {
      current = { s, node: { m, children: [] } };
      roots.push(current.node);
    }
  }
  // threads by their first message's date; children are already in date order
  return roots.sort((x, y) => bySent(x.m!, y.m!));
}

interface Container {
  m: ThreadFacts | null;
  parent: Container | null;
  children: Container[];
}

function isAncestor(maybe: Container, of: Container): boolean {
  for (let c: Container | null = of; c; c = c.parent) if (c === maybe) return true;
  return false;
}

function unlink(c: Container): void {
  if (!c.parent) return;
  const siblings = c.parent.children;
  siblings.splice(siblings.indexOf(c), 1);
  c.parent = null;
}

function link(parent: Container, child: Container): void {
  child.parent = parent;
  parent.children.push(child);
}

/** RFC 5256 3 step 4: dummies without children go; others give way to their children. */
function prune(list: Container[], atRoot: boolean): Container[] {
  const out: Container[] = [];
  for (const c of list) {
    c.children = prune(c.children, false);
    for (const k of c.children) k.parent = c;
    if (c.m) out.push(c);
    else if (c.children.length === 0) continue;
    else if (atRoot && c.children.length > 1) out.push(c);
    else
      for (const k of c.children) {
        k.parent = atRoot ? null : c.parent;
        out.push(k);
      }
  }
  return out;
}

/** REFERENCES (RFC 5256 3): the full algorithm, messages given in sequence order. */
export function threadReferences(messages: readonly ThreadFacts[]): ThreadNode[] {
  const byId = new Map<string, Container>();
  const all: Container[] = [];
  const container = (id: string): Container => {
    let c = byId.get(id);
    if (!c) byId.set(id, (c = { m: null, parent: null, children: [] }));
    return c;
  };
  const ordered = [...messages].sort((a, b) => a.seq - b.seq);
  for (const m of ordered) {
    // (1) a missing or duplicate Message-ID: a container of its own
    const own = messageIds(m.envelope.messageId)[0];
    let c: Container;
    const existing = own === undefined ? undefined : byId.get(own);
    if (own !== undefined && (!existing || existing.m === null)) {
      c = container(own);
      c.m = m;
    } else c = { m, parent: null, children: [] };
    all.push(c);
    // (1.A) References, else the first id of In-Reply-To
    let refs = m.references;
    if (refs.length === 0) refs = messageIds(m.envelope.inReplyTo).slice(0, 1);
    let prev: Container | null = null;
    for (const id of refs) {
      const r = container(id);
      // (1.B) link consecutive references unless the child already has a parent or a loop forms
      if (prev && r !== prev && !r.parent && !isAncestor(r, prev)) link(prev, r);
      prev = r;
    }
    // (1.C) the last reference becomes the parent, replacing any link made from others' References
    if (prev !== c) {
      if (c.parent) unlink(c);
      if (prev && !isAncestor(c, prev)) link(prev, c);
    }
  }
  // (2) the root set
  const roots = new Set<Container>();
  for (const c of [...byId.values(), ...all]) if (!c.parent) roots.add(c);
  // (4) pruning, (5) root set by date
  let rootList = prune([...roots], true);
  const nodeSort = (list: Container[]) => {
    for (const c of list) nodeSort(c.children);
    list.sort((x, y) => bySent(firstOf(x), firstOf(y)));
  };
  const firstOf = (c: Container): ThreadFacts => c.m ?? firstOf(c.children[0]!);
  for (const c of rootList) nodeSort(c.children);
  rootList.sort((x, y) => bySent(firstOf(x), firstOf(y)));
  // (6) root messages with the same base subject are gathered
  const subjectOf = (c: Container) => baseSubject(firstOf(c).envelope.subject);
  const table = new Map<string, Container>();
  for (const c of rootList) {
    const s = subjectOf(c);
    if (s.key === '') continue;
    const old = table.get(s.key);
    if (!old || (!c.m && old.m) || (subjectOf(old).replyOrForward && !s.replyOrForward)) table.set(s.key, c);
  }
  const gathered: Container[] = [];
  for (const c of rootList) {
    if (c.parent) continue; // already gathered under another root
    const s = subjectOf(c);
    const t = s.key === '' ? undefined : table.get(s.key);
    if (!t || t === c) {
      gathered.push(c);
      continue;
    }
    if (!t.m && !c.m) {
      for (const k of c.children) link(t, k);
      c.children = [];
    } else if (!t.m || !c.m) {
      const [dummy, real] = t.m ? [c, t] : [t, c];
      if (dummy === c) {
        // the table's message joins this dummy, which takes its place in the table
        const at = gathered.indexOf(t);
        link(c, t);
        table.set(s.key, c);
        if (at >= 0) gathered[at] = c;
        else gathered.push(c);
      } else link(dummy, real);
    } else if (!subjectOf(t).replyOrForward && s.replyOrForward) {
      link(t, c);
    } else {
      // both replies or neither: a new dummy holds them both
      const dummy: Container = { m: null, parent: null, children: [] };
      const at = gathered.indexOf(t);
      link(dummy, t);
      link(dummy, c);
      table.set(s.key, dummy);
      if (at >= 0) gathered[at] = dummy;
      else gathered.push(dummy);
    }
  }
  rootList = gathered;
  // (7) every set of siblings by sent date
  const toNode = (c: Container): ThreadNode => ({ m: c.m, children: c.children.map(toNode) });
  const nodes = rootList.map(toNode);
  sortSiblings(nodes);
  return nodes;
}

/** `(1 2 (3)(4))`-style thread list (RFC 5256 4), numbers chosen by `num`. */
export function formatThreads(roots: readonly ThreadNode[], num: (m: ThreadFacts) => number): string {
  const node = (n: ThreadNode): string => {
    let s = n.m ? String(num(n.m)) : '';
    if (n.children.length === 1) s += (s ? ' ' : '') + node(n.children[0]!);
    else if (n.children.length > 1) s += (s ? ' ' : '') + n.children.map((c) => `(${node(c)})`).join('');
    return s;
  };
  return roots.map((r) => `(${node(r)})`).join('');
}
