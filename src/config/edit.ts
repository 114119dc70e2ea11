// Changes to the fe.yml document tree. Callers hold the lock (editConfig); these only touch nodes,
// so comments, order and blank lines elsewhere in the file stay as the owner wrote them.
import { isMap, isScalar, isSeq, type Document, type Node } from 'yaml';
import type { AliasConfig, DkimConfig, DomainConfig } from './schema.js';

/** The mapping at `path`, created (in block style) if missing or empty (`key:` with no value). */
function mapAt(doc: Document, path: string[]): void {
  for (let i = 1; i <= path.length; i++) {
    const node = doc.getIn(path.slice(0, i), true) as Node | undefined;
    if (node === undefined || (isScalar(node) && node.value === null)) {
      const fresh = doc.createNode({}) as Node;
      if (node) {
        // Comments under an empty `key:` (such as commented-out examples) stay above the new entries.
        const kept = [node.commentBefore, node.comment].filter((c) => c).join('\n');
        if (kept) fresh.commentBefore = kept;
      }
      doc.setIn(path.slice(0, i), fresh);
    } else if (!isMap(node)) {
      throw new Error(`${path.slice(0, i).join('.')} is not a mapping`);
    } else if (node.flow && node.items.length === 0) {
      node.flow = false; // an empty `{}` that now gets entries reads better as block lines
    }
  }
}

function flowList(doc: Document, items: string[]): Node {
  const seq = doc.createNode(items) as Node;
  if (isSeq(seq)) seq.flow = true; // forward: [a@x, b@y] reads best on one line
  return seq;
}

export function addDomain(doc: Document, key: string): void {
  mapAt(doc, ['domains']);
  doc.setIn(['domains', key], doc.createNode({ aliases: {} }));
}

export function removeDomain(doc: Document, domain: DomainConfig): void {
  doc.deleteIn(['domains', domain.key]);
}

export function setAlias(doc: Document, domain: DomainConfig, key: string, alias: AliasConfig): void {
  mapAt(doc, ['domains', domain.key, 'aliases']);
  const path = ['domains', domain.key, 'aliases', key];
  const existing = doc.getIn(path, true);
  if (isMap(existing)) {
    // Update in place so comments on the alias survive.
    if (alias.forward.length > 0) doc.setIn([...path, 'forward'], flowList(doc, alias.forward));
    else doc.deleteIn([...path, 'forward']);
    if (alias.mailbox) doc.setIn([...path, 'mailbox'], true);
    else doc.deleteIn([...path, 'mailbox']);
    return;
  }
  const node = doc.createNode({}) as Node;
  doc.setIn(path, node);
  if (alias.forward.length > 0) doc.setIn([...path, 'forward'], flowList(doc, alias.forward));
  if (alias.mailbox) doc.setIn([...path, 'mailbox'], true);
}

export function removeAlias(doc: Document, domain: DomainConfig, key: string): void {
  doc.deleteIn(['domains', domain.key, 'aliases', key]);
}

/** `domainKey` is the domain as written in fe.yml. */
export function setDkim(doc: Document, domainKey: string, dkim: DkimConfig): void {
  mapAt(doc, ['domains', domainKey, 'dkim']);
  // One selector stays a plain scalar (how fe.yml always read); a list only when two sign.
  const path = ['domains', domainKey, 'dkim', 'active'];
  const old = doc.getIn(path, true) as Node | undefined;
  if (dkim.active.length <= 1 && (old === undefined || isScalar(old))) {
    doc.setIn(path, dkim.active[0] ?? null); // sets the scalar's value in place, comments and all
  } else {
    const fresh = dkim.active.length === 1 ? (doc.createNode(dkim.active[0]) as Node) : flowList(doc, dkim.active);
    // Switching between scalar and list replaces the node; the owner's comments move over.
    if (old?.commentBefore) fresh.commentBefore = old.commentBefore;
    if (old?.comment) fresh.comment = old.comment;
    doc.setIn(path, fresh);
  }
  doc.setIn(['domains', domainKey, 'dkim', 'published'], flowList(doc, dkim.published));
}

export function setPgpKey(doc: Document, address: string, fingerprint: string, armored: string): void {
  mapAt(doc, ['keys']);
  doc.setIn(['keys', address], doc.createNode({ fingerprint, key: armored.replace(/\r\n/g, '\n').trimEnd() + '\n' }));
}

export function removePgpKey(doc: Document, key: string): void {
  doc.deleteIn(['keys', key]);
}

export function setListen(doc: Document, daemon: string, address: string): void {
  mapAt(doc, ['listen']);
  doc.setIn(['listen', daemon], address);
}

export function setBackupRecipients(doc: Document, recipients: string[]): void {
  mapAt(doc, ['backup']);
  doc.setIn(['backup', 'recipients'], flowList(doc, recipients));
}
