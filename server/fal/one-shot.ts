// One request run to completion outside a socket: fal's run and stream routes and each queued job
// open a session of their own (the same validation, admission, scheduler and batching as a socket's)
// and wait for its one final reply, previews passed on as they come.
import type { ErrorMessage, FrameMessage, PreviewMessage, ServerMessage } from '../../shared/protocol.js';
import type { RealtimeHub } from '../realtime/hub.js';
import type { ModelHost } from '../realtime/model-host.js';
import type { Principal } from '../security/authenticator.js';

export type OneShotOutcome =
  | { ok: true; frame: FrameMessage }
  | { ok: false; error: ErrorMessage }
  | { ok: false; cancelled: true };

export interface OneShot {
  done: Promise<OneShotOutcome>;
  cancel(): void;
}

const ID = 1;

export function runOneShot(
  hub: RealtimeHub,
  principal: Principal,
  generate: Record<string, unknown>,
  options: { background?: boolean; host?: ModelHost; onPreview?(preview: PreviewMessage): void } = {},
): OneShot {
  let settle!: (outcome: OneShotOutcome) => void;
  const done = new Promise<OneShotOutcome>((resolve) => (settle = resolve));
  let finished = false;
  const finish = (outcome: OneShotOutcome) => {
    if (finished) return;
    finished = true;
    settle(outcome);
    // After the reply that ended it has been handled: the session may still be inside its call.
    queueMicrotask(() => hub.closeSession(session));
  };
  const deliver = (message: ServerMessage): boolean => {
    switch (message.type) {
      case 'preview':
        options.onPreview?.(message);
        return true;
      case 'frame':
        finish({ ok: true, frame: message });
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
  session.handleMessage({ type: 'generate', id: ID, ...generate });
  return {
    done,
    cancel: () => {
      if (!finished) session.handleMessage({ type: 'cancel', id: ID });
    },
  };
}
