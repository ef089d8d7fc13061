// One request run to completion outside a socket: fal's run and stream routes and each queued job
// open a session of their own (the same validation, admission, scheduler and batching as a socket's)
// and wait for its final replies, previews passed on as they come.
//
// A request for several images (fal's num_images) asks for them one after another in that one
// session, the seed counting up from the first image's: it holds one user's share of the GPU and
// one session of its key, as a socket does, and takes as many turns as it has images.
import type { ErrorMessage, FrameMessage, PreviewMessage, ServerMessage } from '../../shared/protocol.js';
import type { RealtimeHub } from '../realtime/hub.js';
import type { ModelHost } from '../realtime/model-host.js';
import type { Principal } from '../security/authenticator.js';

export type OneShotOutcome =
  | { ok: true; frames: FrameMessage[] }
  | { ok: false; error: ErrorMessage }
  | { ok: false; cancelled: true };

export interface OneShot {
  done: Promise<OneShotOutcome>;
  cancel(): void;
}

export interface OneShotOptions {
  background?: boolean;
  host?: ModelHost;
  /** Images to make, 1 by default. */
  images?: number;
  /** Each preview, with the index of the image it belongs to. */
  onPreview?(preview: PreviewMessage, image: number): void;
}

/** Seeds are uint32 (validateMessage); image i of a request gets the first image's seed + i. */
const SEED_RANGE = 2 ** 32;

export function runOneShot(hub: RealtimeHub, principal: Principal, generate: Record<string, unknown>, options: OneShotOptions = {}): OneShot {
  const images = options.images ?? 1;
  const frames: FrameMessage[] = [];
  let settle!: (outcome: OneShotOutcome) => void;
  const done = new Promise<OneShotOutcome>((resolve) => (settle = resolve));
  let finished = false;
  let cancelled = false;
  let asked = 0;
  const finish = (outcome: OneShotOutcome) => {
    if (finished) return;
    finished = true;
    settle(outcome);
    // After the reply that ended it has been handled: the session may still be inside its call.
    queueMicrotask(() => hub.closeSession(session));
  };
  // Request ids count the images from 1, so a reply names the image it is for.
  const ask = (image: number) => {
    if (cancelled) return finish({ ok: false, cancelled: true });
    const seed = image === 0 ? generate.seed : (frames[0]!.seed + image) % SEED_RANGE;
    asked = image + 1;
    session.handleMessage({ type: 'generate', ...generate, ...(seed !== undefined ? { seed } : {}), id: asked });
  };
  const deliver = (message: ServerMessage): boolean => {
    switch (message.type) {
      case 'preview':
        options.onPreview?.(message, Number(message.id) - 1);
        return true;
      case 'frame':
        frames.push(message);
        if (frames.length === images) finish({ ok: true, frames });
        // The next image is asked for outside the reply's delivery, as a client's next message would be.
        else queueMicrotask(() => !finished && ask(frames.length));
        return true;
      case 'error':
        finish({ ok: false, error: message });
        return true;
      case 'cancelled':
      case 'superseded':
      case 'skipped':
        finish({ ok: false, cancelled: true });
        return true;
      default:
        return true;
    }
  };
  const { session } = hub.openSession({ deliver, bufferedAmount: () => 0, close: () => {} }, principal, { background: options.background, host: options.host });
  ask(0);
  return {
    done,
    cancel: () => {
      if (finished || cancelled) return;
      cancelled = true;
      // Between two images nothing runs: the next ask() ends the request instead.
      if (asked > frames.length) session.handleMessage({ type: 'cancel', id: asked });
    },
  };
}
