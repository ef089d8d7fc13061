// The fal app ids this server answers to, and which model folder serves each. fal clients address
// an app by `owner/alias` followed by a subpath (`/realtime`, `/image-to-image`, `/requests/<id>`),
// so routing is a prefix match on path segments; what the rest of the path means is the caller's.

export interface FalApp {
  /** `owner/alias`, e.g. `fal-ai/fast-turbo-diffusion`. */
  id: string;
  /** Model folder that serves this app. */
  modelDir: string;
  /** fal's documented defaults for the app, used where a request leaves the field out. fal apps
   * written against these ids expect them; the model's own defaults may differ. */
  defaults: { steps?: number; strength?: number };
}

/** fal's fast image apps and the defaults their docs give. */
export const FAL_APP_PRESETS: readonly { id: string; defaults: FalApp['defaults'] }[] = [
  { id: 'fal-ai/fast-turbo-diffusion', defaults: { steps: 2, strength: 0.95 } },
  { id: 'fal-ai/fast-lcm-diffusion', defaults: { steps: 6, strength: 0.95 } },
  { id: 'fal-ai/lcm-sd15-i2i', defaults: { steps: 4, strength: 0.8 } },
];

const SEGMENT = /^[A-Za-z0-9._-]+$/;

function segmentsOf(path: string): string[] {
  // Query and fragment are not part of the app address; empty segments come from leading,
  // trailing or doubled slashes, which fal's client never means as segments.
  const cut = path.search(/[?#]/);
  return (cut >= 0 ? path.slice(0, cut) : path).split('/').filter((s) => s.length > 0);
}

function checkAppId(id: string, spec: string): void {
  const parts = id.split('/');
  const valid = parts.length === 2 && parts.every((p) => SEGMENT.test(p) && p !== '.' && p !== '..');
  if (!valid) {
    throw new Error(
      `--app ${JSON.stringify(spec)}: the app id must be owner/alias, each part made of letters, digits, '.', '_' or '-' ` +
        `(e.g. fal-ai/fast-turbo-diffusion), got ${JSON.stringify(id)}`,
    );
  }
}

function presetDefaults(id: string): FalApp['defaults'] {
  const preset = FAL_APP_PRESETS.find((p) => p.id === id);
  return preset ? { ...preset.defaults } : {};
}

/**
 * Apps from repeatable `--app ID=DIR` flags. A preset id keeps fal's defaults whatever folder
 * serves it; any other id gets none, so the model's own defaults apply. No specs: the presets,
 * all served by `defaultModelDir`.
 */
export function parseAppSpecs(specs: string[], defaultModelDir: string): FalApp[] {
  if (specs.length === 0) {
    return FAL_APP_PRESETS.map((p) => ({ id: p.id, modelDir: defaultModelDir, defaults: { ...p.defaults } }));
  }
  const apps: FalApp[] = [];
  const seen = new Set<string>();
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    if (eq < 0) throw new Error(`--app ${JSON.stringify(spec)}: expected ID=DIR, e.g. fal-ai/fast-turbo-diffusion=models/sd-turbo`);
    // Split at the first '=': ids cannot hold one, folder paths may.
    const id = spec.slice(0, eq).trim();
    const modelDir = spec.slice(eq + 1).trim();
    checkAppId(id, spec);
    if (modelDir.length === 0) throw new Error(`--app ${JSON.stringify(spec)}: the model folder after '=' is empty`);
    if (seen.has(id)) throw new Error(`--app ${JSON.stringify(spec)}: app ${id} is given more than once`);
    seen.add(id);
    apps.push({ id, modelDir, defaults: presetDefaults(id) });
  }
  return apps;
}

export interface AppMatch {
  app: FalApp;
  /** The path after the app id, with a leading slash ('' when nothing follows). */
  subpath: string;
  /** The same, as segments: `['image-to-image', 'realtime']`. */
  rest: string[];
}

export class AppTable {
  private readonly byId = new Map<string, FalApp>();
  private readonly maxSegments: number;

  constructor(apps: FalApp[]) {
    for (const app of apps) {
      if (this.byId.has(app.id)) throw new Error(`app ${app.id} is served twice`);
      this.byId.set(app.id, app);
    }
    this.maxSegments = Math.max(0, ...apps.map((a) => a.id.split('/').length));
  }

  list(): FalApp[] {
    return [...this.byId.values()];
  }

  /** The served app whose id is the longest segment prefix of `path`, or undefined. */
  match(path: string): AppMatch | undefined {
    const segments = segmentsOf(path);
    for (let n = Math.min(this.maxSegments, segments.length); n > 0; n--) {
      const app = this.byId.get(segments.slice(0, n).join('/'));
      if (app) {
        const rest = segments.slice(n);
        return { app, rest, subpath: rest.length > 0 ? `/${rest.join('/')}` : '' };
      }
    }
    return undefined;
  }

  /** What to tell a client that addressed an app not served here. */
  unknownAppMessage(path: string): string {
    const asked = segmentsOf(path).slice(0, 2).join('/');
    const served = this.list().map((a) => a.id).join(', ') || '(none)';
    return `no app '${asked}' is served here; served: ${served}`;
  }
}
