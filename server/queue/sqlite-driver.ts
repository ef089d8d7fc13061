// The one place the queue gets SQLite from. better-sqlite3 is an optional dependency with a native
// addon built per Node ABI, so it may be missing or fail to load (Node 24 where it could not be
// built); Node 22.13+ ships `node:sqlite` (DatabaseSync), which covers that case. Both are
// synchronous and nearly the same shape; this module hides the few differences (how each is loaded,
// blobs come back as Buffer or Uint8Array, counts as number or bigint, which values bind) so the
// queue's SQL runs on either unchanged.
import { createRequire } from 'node:module';

export type DriverName = 'better-sqlite3' | 'node:sqlite';
export const DRIVERS: readonly DriverName[] = ['better-sqlite3', 'node:sqlite'];

/** What both drivers bind. `undefined` is bound as NULL (node:sqlite would refuse it). */
export type SqlValue = null | number | bigint | string | Uint8Array;
export type SqlParam = SqlValue | undefined;
export type Row = Record<string, SqlValue>;

export interface Statement {
  run(...params: SqlParam[]): { changes: number };
  get(...params: SqlParam[]): Row | undefined;
  all(...params: SqlParam[]): Row[];
}

export interface Database {
  readonly driver: DriverName;
  prepare(sql: string): Statement;
  exec(sql: string): void;
  /** Runs `fn` in one IMMEDIATE transaction (the write lock taken up front, so it cannot fail half
   * way on a lock upgrade); a throw rolls everything back and rethrows. Not re-entrant. */
  transaction<T>(fn: () => T): T;
  close(): void;
}

/** The common shape of the two libraries' statement and connection objects, as far as used here. */
interface NativeStatement {
  run(...params: unknown[]): { changes: number | bigint };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}
interface NativeDatabase {
  prepare(sql: string): NativeStatement;
  exec(sql: string): unknown;
  close(): unknown;
}
type Opener = (file: string) => NativeDatabase;

export class NoSqliteDriverError extends Error {
  override name = 'NoSqliteDriverError';
}

const require = createRequire(import.meta.url);

/** The error's message on one line (dlopen's ABI mismatch message spans two). */
function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, ' ');
}

/** An opener for `name`, or the reason it does not load here. Opening ':memory:' proves the native
 * part loads: better-sqlite3's JavaScript requires fine and only its first `new Database` loads the
 * addon, which is where an ABI mismatch shows. */
function loadDriver(name: DriverName): { ok: true; open: Opener } | { ok: false; reason: string } {
  let open: Opener;
  try {
    if (name === 'better-sqlite3') {
      const Ctor = require('better-sqlite3') as new (file: string) => NativeDatabase;
      open = (file) => new Ctor(file);
    } else {
      const { DatabaseSync } = require('node:sqlite') as { DatabaseSync: new (file: string) => NativeDatabase };
      open = (file) => new DatabaseSync(file);
    }
    open(':memory:').close();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (name === 'node:sqlite' && (code === 'ERR_UNKNOWN_BUILTIN_MODULE' || code === 'MODULE_NOT_FOUND')) {
      return { ok: false, reason: `not built into Node ${process.versions.node} (it is from 22.13 on)` };
    }
    if (name === 'better-sqlite3' && code === 'MODULE_NOT_FOUND' && /'better-sqlite3'/.test(oneLine(err))) {
      return { ok: false, reason: 'not installed' };
    }
    return { ok: false, reason: oneLine(err) };
  }
  return { ok: true, open };
}

function bind(params: SqlParam[]): SqlValue[] {
  return params.map((p) => (p === undefined ? null : p));
}

/** Blobs as plain Uint8Array and integers as numbers, whichever driver read them. */
function normalizeRow(row: unknown): Row {
  const out: Row = {};
  for (const [key, value] of Object.entries(row as Record<string, unknown>)) {
    if (Buffer.isBuffer(value)) out[key] = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    else out[key] = value as SqlValue;
  }
  return out;
}

function wrap(native: NativeDatabase, driver: DriverName): Database {
  let inTransaction = false;
  const exec = (sql: string): void => {
    native.exec(sql);
  };
  return {
    driver,
    prepare(sql) {
      const stmt = native.prepare(sql);
      return {
        run: (...params) => ({ changes: Number(stmt.run(...bind(params)).changes) }),
        get: (...params) => {
          const row = stmt.get(...bind(params));
          return row === undefined ? undefined : normalizeRow(row);
        },
        all: (...params) => stmt.all(...bind(params)).map(normalizeRow),
      };
    },
    exec,
    transaction(fn) {
      if (inTransaction) throw new Error('nested transaction');
      inTransaction = true;
      try {
        exec('BEGIN IMMEDIATE');
        let result: ReturnType<typeof fn>;
        try {
          result = fn();
        } catch (err) {
          exec('ROLLBACK');
          throw err;
        }
        exec('COMMIT');
        return result;
      } finally {
        inTransaction = false;
      }
    },
    close() {
      native.close();
    },
  };
}

/**
 * Opens `file` with `prefer` if given, else with the first driver of DRIVERS that loads here.
 * Throws NoSqliteDriverError naming every driver tried and why it did not load.
 */
export function openDatabase(file: string, prefer?: DriverName): Database {
  const candidates = prefer ? [prefer] : DRIVERS;
  const failures: string[] = [];
  for (const name of candidates) {
    const loaded = loadDriver(name);
    if (loaded.ok) return wrap(loaded.open(file), name);
    failures.push(`${name}: ${loaded.reason}`);
  }
  const what = prefer ? `The SQLite driver asked for does not load here` : 'No SQLite driver loads here';
  throw new NoSqliteDriverError(
    `${what}, so the job queue cannot open (${failures.join('; ')}). ` +
      'Install better-sqlite3 for this Node version (npm ci builds it) or run Node 22.13 or newer, which has node:sqlite built in.',
  );
}
