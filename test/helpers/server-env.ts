// What the server reads from its environment, for tests that check deploy files (Dockerfiles,
// compose, Kubernetes manifests) name only variables the server actually uses.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** Environment names the server (and its uWebSockets.js loader) reads. */
export function serverEnvNames(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ts')) for (const m of readFileSync(full, 'utf8').matchAll(/\benv\.([A-Z][A-Z0-9_]*)\b/g)) names.add(m[1]);
    }
  };
  walk(path.join(REPO, 'server'));
  // Read by the C library, not by our code: it makes freed image buffers go back to the system
  // (docs/security.md), and `npm start` sets it too.
  names.add('MALLOC_MMAP_THRESHOLD_');
  return names;
}
