// The repository's nginx config, rendered for a local run: the same balancing, proxying and retry
// rules, with only what a container deployment fixes and a loopback run cannot (upstream
// addresses and their number, the listen address, file paths a non-root workspace can write)
// changed. Whatever the deployment file says about least_conn, proxy_next_upstream or passive
// health is what the local cluster runs, so the tests and the bench measure the shipped config.
import { existsSync } from 'node:fs';
import path from 'node:path';

/** deploy/nginx/nginx.conf where the config has moved there, else deploy/nginx.conf. */
export function nginxConfigPath(repoRoot: string): string {
  const moved = path.join(repoRoot, 'deploy', 'nginx', 'nginx.conf');
  return existsSync(moved) ? moved : path.join(repoRoot, 'deploy', 'nginx.conf');
}

export interface LocalNginx {
  /** A folder nginx may write: pid, error log, temp files. */
  dir: string;
  listenPort: number;
  /** One loopback upstream per node, in node order. */
  upstreamPorts: readonly number[];
  /** The source file's folder, for relative `include`s. */
  sourceDir: string;
}

// `server host:port params;` inside an upstream block (a `server {` block has no host:port).
const UPSTREAM_SERVER = /^([ \t]*)server[ \t]+[\w.-]+:\d+([^;]*);[^\n]*\n/gm;
const LISTEN = /^[ \t]*listen[ \t]+[^;]+;[^\n]*\n/gm;
// Paths a container's nginx owns: the local run sets its own.
const OWNED_PATHS = /^[ \t]*(pid|error_log|access_log|user|(client_body|proxy|fastcgi|uwsgi|scgi)_temp_path)[ \t][^;]*;[^\n]*\n/gm;

/** Keeps the first match of `pattern` as `replacement` and drops the others. */
function keepFirst(conf: string, pattern: RegExp, replacement: (m: RegExpMatchArray) => string, what: string): string {
  const matches = [...conf.matchAll(pattern)];
  if (matches.length === 0) throw new Error(`nginx config: no ${what} found to rewrite`);
  let first = true;
  return conf.replace(pattern, (...args) => {
    if (!first) return '';
    first = false;
    return replacement(args.slice(0, -2) as unknown as RegExpMatchArray);
  });
}

export function renderNginxConfig(source: string, local: LocalNginx): string {
  let conf = source.replace(OWNED_PATHS, '');
  conf = keepFirst(conf, UPSTREAM_SERVER, (m) => local.upstreamPorts.map((port) => `${m[1]}server 127.0.0.1:${port}${m[2]};\n`).join(''), 'upstream server');
  conf = keepFirst(conf, LISTEN, () => `    listen 127.0.0.1:${local.listenPort};\n`, 'listen directive');
  // One worker: least_conn counts connections per worker unless the upstream has a shared zone.
  conf = conf.replace(/worker_processes[ \t]+[^;]+;/, 'worker_processes 1;');
  conf = conf.replace(/^([ \t]*include[ \t]+)([^;/][^;]*);/gm, (line, head: string, file: string) => {
    const beside = path.join(local.sourceDir, file);
    const system = path.join('/etc/nginx', file);
    return existsSync(beside) ? `${head}${beside};` : existsSync(system) ? `${head}${system};` : line;
  });
  const temps = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((p) => `  ${p}_temp_path ${local.dir}/${p};`).join('\n');
  conf = conf.replace(/http[ \t]*\{/, `http {\n  access_log off;\n${temps}`);
  return `pid ${local.dir}/nginx.pid;\nerror_log ${local.dir}/error.log warn;\n${conf}`;
}

/** The upstream's fail_timeout (nginx's default is 10 s): how long a node that failed once is passed over. */
export function failTimeoutMs(conf: string): number {
  const match = /fail_timeout=(\d+)(ms|s|m)?/.exec(conf);
  if (!match) return 10_000;
  const unit = match[2] === 'ms' ? 1 : match[2] === 'm' ? 60_000 : 1000;
  return Number(match[1]) * unit;
}
