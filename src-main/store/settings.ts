import type { Statement } from 'better-sqlite3';
import { toJsonText, type StoreContext } from './context';

/** Key → JSON value. Readers give a fallback, so a missing key is never an error. */
export class SettingsRepository {
  readonly #ctx: StoreContext;
  readonly #get: Statement<[string], { value: string }>;
  readonly #set: Statement<{ key: string; value: string }>;

  constructor(ctx: StoreContext) {
    this.#ctx = ctx;
    this.#get = ctx.db.prepare('SELECT value FROM settings WHERE key = ?');
    this.#set = ctx.db.prepare('INSERT INTO settings (key, value) VALUES (:key, :value) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
  }

  /** The stored value (as written; not checked against T), or `fallback` when the key is unset. */
  get<T>(key: string, fallback: T): T {
    const row = this.#ctx.read(`read setting '${key}'`, () => this.#get.get(key));
    return row === undefined ? fallback : (JSON.parse(row.value) as T);
  }

  set(key: string, value: unknown): void {
    const text = toJsonText(value, `setting '${key}'`);
    this.#ctx.write(`save setting '${key}'`, () => this.#set.run({ key, value: text }));
  }
}
