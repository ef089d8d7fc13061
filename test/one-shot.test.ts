// runOneShot's own logic, against a session whose replies the test gives: several images asked for
// one after another with seeds counting up, and a cancel wherever it lands (during an image, or
// between two, when nothing runs). The real session behind it is covered by fal-client.e2e.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FrameMessage, ServerMessage } from '../shared/protocol.js';
import type { RealtimeHub } from '../server/realtime/hub.js';
import type { ReplySink } from '../server/realtime/reply-sink.js';
import { runOneShot } from '../server/fal/one-shot.js';

interface ScriptedSession {
  received: Record<string, unknown>[];
  reply(message: ServerMessage): void;
  closed: boolean;
}

function scriptedHub(): { hub: RealtimeHub; session: ScriptedSession } {
  let sink: ReplySink | undefined;
  const session: ScriptedSession = {
    received: [],
    reply: (message) => sink!.deliver(message),
    closed: false,
  };
  const hub = {
    openSession(replySink: ReplySink) {
      sink = replySink;
      return { session: { handleMessage: (message: Record<string, unknown>) => session.received.push(message) }, hello: {} };
    },
    closeSession() {
      session.closed = true;
    },
  } as unknown as RealtimeHub;
  return { hub, session };
}

const frame = (id: number, seed: number): FrameMessage => ({
  type: 'frame', id, image: new Uint8Array([id]), format: 'jpeg', width: 8, height: 8, seed,
  timings: { queue: 0, imageDecode: 0, textEncoder: 0, vaeEncoder: 0, steps: [1], batchSizes: [1], previews: 0, decode: 1, decodes: 1, encode: 0, total: 2 },
});

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

test('several images: one asked at a time, seeds counting up from the first frame, wrapping at 2^32', async () => {
  const { hub, session } = scriptedHub();
  const previews: [number, number][] = [];
  const shot = runOneShot(hub, { keyId: 'k' }, { prompt: 'x', steps: 2 }, { images: 3, onPreview: (p, image) => previews.push([image, p.step]) });
  assert.deepEqual(session.received, [{ type: 'generate', prompt: 'x', steps: 2, id: 1 }], 'no seed given: the session picks the first');
  session.reply({ type: 'preview', id: 1, step: 1, steps: 2, image: new Uint8Array(), width: 8, height: 8 });
  session.reply(frame(1, 0xffffffff));
  await settle();
  assert.deepEqual(session.received.slice(1), [{ type: 'generate', prompt: 'x', steps: 2, seed: 0, id: 2 }]);
  session.reply({ type: 'preview', id: 2, step: 1, steps: 2, image: new Uint8Array(), width: 8, height: 8 });
  session.reply(frame(2, 0));
  await settle();
  assert.equal((session.received[2] as Record<string, unknown>).seed, 1);
  session.reply(frame(3, 1));
  const outcome = await shot.done;
  assert.ok(outcome.ok);
  assert.deepEqual(outcome.frames.map((f) => f.id), [1, 2, 3]);
  assert.deepEqual(previews, [[0, 1], [1, 1]]);
  await settle();
  assert.equal(session.closed, true);
});

test('a cancel during an image is sent for that image; one between images sends nothing and ends it', async () => {
  const during = scriptedHub();
  const first = runOneShot(during.hub, { keyId: 'k' }, { prompt: 'x', seed: 5 }, { images: 2 });
  during.session.reply(frame(1, 5));
  await settle();
  first.cancel();
  assert.deepEqual(during.session.received.at(-1), { type: 'cancel', id: 2 });
  during.session.reply({ type: 'cancelled', id: 2 });
  assert.deepEqual(await first.done, { ok: false, cancelled: true });

  const between = scriptedHub();
  const second = runOneShot(between.hub, { keyId: 'k' }, { prompt: 'x', seed: 5 }, { images: 2 });
  between.session.reply(frame(1, 5));
  second.cancel(); // the frame is in, the next image not yet asked for
  assert.deepEqual(await second.done, { ok: false, cancelled: true });
  assert.deepEqual(between.session.received.map((m) => m.type), ['generate'], 'no cancel for an id never sent, no second image');
});

test('an error on any image ends the request with it', async () => {
  const { hub, session } = scriptedHub();
  const shot = runOneShot(hub, { keyId: 'k' }, { prompt: 'x', seed: 1 }, { images: 2 });
  session.reply(frame(1, 1));
  await settle();
  session.reply({ type: 'error', id: 2, code: 'shutting_down', message: 'draining' });
  const outcome = await shot.done;
  assert.ok(!outcome.ok && 'error' in outcome && outcome.error.code === 'shutting_down');
});
