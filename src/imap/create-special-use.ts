// CREATE-SPECIAL-USE (RFC 6154 3): `CREATE name (USE (\Archive))` gives the new mailbox its use.
import { MailStoreError, SPECIAL_USE, type MailboxStore } from '../store/mailbox-db.js';
import { ImapSyntaxError, type Token } from './parser.js';

/** A use fe cannot give; answered `NO [USEATTR] ...` (the code is part of the text, as for NO). */
export class UseAttrError extends MailStoreError {
  constructor(text: string) {
    super(`[USEATTR] ${text}`);
  }
}

/**
 * The special use asked for by CREATE's optional parameter list, or null. fe keeps one use per
 * mailbox and each use on one mailbox at most, so more than one, or one already given, is NO.
 */
export function createSpecialUse(params: Token[], store: MailboxStore): string | null {
  if (params.length === 0) return null;
  const list = params[0];
  if (params.length > 1 || list?.type !== 'list') throw new ImapSyntaxError('CREATE takes a mailbox name and an optional parameter list');
  let use: string | null = null;
  for (let i = 0; i < list.items.length; i++) {
    const t = list.items[i]!;
    if (t.type !== 'atom' || t.value.toUpperCase() !== 'USE') throw new ImapSyntaxError('unknown CREATE parameter');
    const uses = list.items[++i];
    if (uses?.type !== 'list') throw new ImapSyntaxError('USE needs a list of special-use attributes');
    for (const u of uses.items) {
      const name = u.type === 'atom' ? u.value : '';
      const known = [...SPECIAL_USE].find((x) => x.toLowerCase() === name.toLowerCase());
      if (!known) throw new UseAttrError(`fe does not know the special use ${name.slice(0, 20) || '(not an atom)'}`);
      if (use !== null && use !== known) throw new UseAttrError('fe gives a mailbox one special use');
      use = known;
    }
  }
  const holder = use === null ? undefined : store.listFolders().find((f) => f.specialUse === use);
  if (holder) throw new UseAttrError(`${holder.name} already has ${use}`);
  return use;
}
