// The fal translation layer, pure: which app a path addresses, fal input -> native generate
// fields (ranges left to validateMessage, whose errors come back under fal's field names), and
// native frames/previews -> fal's output objects.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode, type FrameMessage, type Limits, type ModelInfo, type PreviewMessage } from '../shared/protocol.js';
import { loadConfig } from '../server/config.js';
import { validateMessage, type ValidGenerate } from '../server/realtime/validate.js';
import { AppTable, FAL_APP_PRESETS, parseAppSpecs, type FalApp } from '../server/fal/apps.js';
import { falErrorFromNative, mapFalInput, MAX_NUM_IMAGES, type FalPlan } from '../server/fal/fal-input.js';
import { contentTypeOf, dataUri, falImageResult, falImagesResult, falPreviewResult } from '../server/fal/fal-output.js';

// As the hub reports the bundled default model: 256 px, size grid 32, Euler (SD-Turbo style).
const model: ModelInfo = {
  name: 'default', width: 256, height: 256, sizeMultiple: 32, minSteps: 1, maxSteps: 8, defaultSteps: 2,
  scheduler: 'euler_ancestral', img2img: true, previews: 'decoder', dtype: 'float32', device: 'cpu',
  finalDecoders: ['vae', 'preview'], finalDecoder: 'vae',
};
const limits: Limits = { ...loadConfig([], {}).limits, sizeMultiple: 32 };

const [turbo, lcm, i2i] = parseAppSpecs([], 'models/default');
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);

function plan(input: unknown, app: FalApp = turbo, m: ModelInfo = model, l: Limits = limits): FalPlan {
  const r = mapFalInput(input, app, m, l);
  assert.ok(r.ok, `expected a plan, got ${JSON.stringify(!r.ok && r.error)}`);
  return r.plan;
}

function refusal(input: unknown, app: FalApp = turbo) {
  const r = mapFalInput(input, app, model, limits);
  assert.ok(!r.ok, 'expected an error');
  return r.error;
}

/** Maps, then runs the native validation the server runs; a native error comes back in fal terms. */
function throughNative(input: Record<string, unknown>, app: FalApp = turbo, m: ModelInfo = model) {
  const p = plan(input, app, m);
  const v = validateMessage({ type: 'generate', id: 1, ...p.generate }, limits, m);
  return v.ok ? { ok: true as const, message: v.message as ValidGenerate } : { ok: false as const, error: falErrorFromNative(v.code, v.message, p) };
}

describe('fal apps', () => {
  test('no --app: the three fast image apps on the default model, with fal defaults', () => {
    assert.deepEqual(
      parseAppSpecs([], 'models/default').map((a) => [a.id, a.modelDir, a.defaults]),
      [
        ['fal-ai/fast-turbo-diffusion', 'models/default', { steps: 2, strength: 0.95 }],
        ['fal-ai/fast-lcm-diffusion', 'models/default', { steps: 6, strength: 0.95 }],
        ['fal-ai/lcm-sd15-i2i', 'models/default', { steps: 4, strength: 0.8 }],
      ],
    );
    assert.equal(FAL_APP_PRESETS.length, 3);
  });

  test('--app ID=DIR: presets keep their defaults, other ids get none', () => {
    const apps = parseAppSpecs(['fal-ai/lcm-sd15-i2i=models/lcm', 'me/my_app.v2=/srv/models/a=b'], 'models/default');
    assert.deepEqual(apps, [
      { id: 'fal-ai/lcm-sd15-i2i', modelDir: 'models/lcm', defaults: { steps: 4, strength: 0.8 } },
      { id: 'me/my_app.v2', modelDir: '/srv/models/a=b', defaults: {} },
    ]);
  });

  test('bad specs and duplicate ids are refused with a clear message', () => {
    assert.throws(() => parseAppSpecs(['fal-ai/fast-turbo-diffusion'], 'd'), /expected ID=DIR/);
    assert.throws(() => parseAppSpecs(['fast-turbo-diffusion=d'], 'd'), /must be owner\/alias/);
    assert.throws(() => parseAppSpecs(['a/b/c=d'], 'd'), /must be owner\/alias/);
    assert.throws(() => parseAppSpecs(['a/b c=d'], 'd'), /must be owner\/alias/);
    assert.throws(() => parseAppSpecs(['../x=d'], 'd'), /must be owner\/alias/);
    assert.throws(() => parseAppSpecs(['a/b='], 'd'), /folder after '=' is empty/);
    assert.throws(() => parseAppSpecs(['a/b=x', 'a/b=y'], 'd'), /a\/b is given more than once/);
  });

  test('AppTable.match: the app, then the rest of the path', () => {
    const table = new AppTable(parseAppSpecs([], 'm'));
    const rt = table.match('/fal-ai/fast-turbo-diffusion/image-to-image/realtime');
    assert.equal(rt?.app.id, 'fal-ai/fast-turbo-diffusion');
    assert.deepEqual(rt?.rest, ['image-to-image', 'realtime']);
    assert.equal(rt?.subpath, '/image-to-image/realtime');

    const status = table.match('/fal-ai/lcm-sd15-i2i/requests/0b7c-uuid/status?logs=1');
    assert.equal(status?.app.id, 'fal-ai/lcm-sd15-i2i');
    assert.deepEqual(status?.rest, ['requests', '0b7c-uuid', 'status']);

    const bare = table.match('fal-ai/fast-lcm-diffusion/');
    assert.deepEqual([bare?.app.id, bare?.rest, bare?.subpath], ['fal-ai/fast-lcm-diffusion', [], '']);
  });

  test('AppTable.match: longest served prefix wins; unknown apps are named with what is served', () => {
    const mk = (id: string): FalApp => ({ id, modelDir: id, defaults: {} });
    const table = new AppTable([mk('a/b'), mk('a/b/c'), mk('x/y')]);
    assert.equal(table.match('/a/b/c/realtime')?.app.id, 'a/b/c');
    assert.deepEqual(table.match('/a/b/c/realtime')?.rest, ['realtime']);
    assert.equal(table.match('/a/b/d')?.app.id, 'a/b');
    assert.equal(table.match('/a/bc/realtime'), undefined, 'segments match whole, not as string prefixes');
    assert.equal(table.match('/fal-ai/flux/dev'), undefined);
    assert.equal(table.match('/'), undefined);
    assert.equal(table.unknownAppMessage('/fal-ai/flux/dev/realtime'), "no app 'fal-ai/flux' is served here; served: a/b, a/b/c, x/y");
    assert.throws(() => new AppTable([mk('a/b'), mk('a/b')]), /served twice/);
  });
});

describe('mapFalInput', () => {
  test('image_bytes (realtime convention) becomes the native image; no previews unless asked', () => {
    const p = plan({ prompt: 'a cat', image_bytes: PNG, request_id: 'r1', seed: 7 });
    assert.deepEqual(p.generate, { prompt: 'a cat', image: PNG, seed: 7, previews: false, steps: 2, strength: 0.95 });
    assert.deepEqual([p.requestId, p.imageField, p.imageUrl, p.syncMode, p.streamPreviews], ['r1', 'image_bytes', undefined, false, false]);
    const q = plan({ prompt: 'a cat', image_bytes: PNG, stream_previews: true, request_id: 3 });
    assert.equal(q.generate.previews, true);
    assert.equal(q.streamPreviews, true);
    assert.equal(q.requestId, 3);
  });

  test('image_url (data: URI + sync_mode convention) is left to resolve; both at once is an error', () => {
    const url = dataUri(PNG, 'image/png');
    const p = plan({ prompt: 'a cat', image_url: url, sync_mode: true }, i2i);
    assert.equal(p.imageUrl, url);
    assert.equal(p.imageField, 'image_url');
    assert.equal(p.syncMode, true);
    assert.equal(p.generate.image, undefined);
    assert.deepEqual([p.generate.steps, p.generate.strength], [4, 0.8]);
    assert.ok(plan({ prompt: 'x', image_url: 'https://example.com/a.png' }).imageUrl);

    assert.deepEqual(refusal({ prompt: 'x', image_url: url, image_bytes: PNG }).loc, ['body', 'image_url']);
    const wrong = refusal({ prompt: 'x', image_url: 42 });
    assert.deepEqual([wrong.loc, wrong.type], [['body', 'image_url'], 'type_error']);
    assert.deepEqual(refusal({ prompt: 'x', image_url: 'file:///etc/passwd' }).loc, ['body', 'image_url']);
  });

  test('defaults per app fill absent fields; given values and the model default otherwise', () => {
    const fast = plan({ prompt: 'x', image_bytes: PNG }, lcm).generate;
    assert.deepEqual([fast.steps, fast.strength], [6, 0.95]);
    const given = plan({ prompt: 'x', image_bytes: PNG, num_inference_steps: 3, strength: 0.5 }, lcm).generate;
    assert.deepEqual([given.steps, given.strength], [3, 0.5]);
    // Text-to-image: strength means nothing, so no default is added.
    assert.equal(plan({ prompt: 'x' }).generate.strength, undefined);
    const custom: FalApp = { id: 'me/mine', modelDir: 'd', defaults: {} };
    const bare = plan({ prompt: 'x', image_bytes: PNG }, custom).generate;
    assert.deepEqual([bare.steps, bare.strength], [undefined, undefined]);
  });

  test('defaults are clamped so that they never cause an error', () => {
    const small: Limits = { ...limits, maxSteps: 4 };
    assert.equal(plan({ prompt: 'x' }, lcm, model, small).generate.steps, 4, 'fast-lcm default 6 > max 4');
    assert.equal(plan({ prompt: 'x' }, lcm, { ...model, maxSteps: 3 }).generate.steps, 3);
    const low: FalApp = { id: 'me/low', modelDir: 'd', defaults: { steps: 0, strength: 1.5 } };
    const g = plan({ prompt: 'x', image_bytes: PNG }, low).generate;
    assert.deepEqual([g.steps, g.strength], [1, 1]);
    // Euler runs floor(steps x strength): one step at strength 0.95 would run none.
    assert.equal(plan({ prompt: 'x', image_bytes: PNG, num_inference_steps: 1 }).generate.strength, 1);
    assert.equal(plan({ prompt: 'x', image_bytes: PNG, strength: 0.3 }).generate.steps, 4);
    for (const input of [
      { prompt: 'x', image_bytes: PNG, num_inference_steps: 1 },
      { prompt: 'x', image_bytes: PNG, strength: 0.3 },
      { prompt: 'x', image_bytes: PNG, strength: 0.13 },
    ]) assert.ok(throughNative(input).ok, JSON.stringify(input.strength ?? input.num_inference_steps));
  });

  test('image_size presets scale to the model, on the grid and within limits', () => {
    const size = (name: string, m: ModelInfo = model, l: Limits = limits) => {
      const g = plan({ prompt: 'x', image_size: name }, turbo, m, l).generate;
      return [g.width, g.height];
    };
    assert.deepEqual(size('square'), [256, 256]);
    assert.deepEqual(size('square_hd'), [512, 512]);
    assert.deepEqual(size('portrait_4_3'), [384, 512]);
    assert.deepEqual(size('portrait_16_9'), [288, 512]);
    assert.deepEqual(size('landscape_4_3'), [512, 384]);
    assert.deepEqual(size('landscape_16_9'), [512, 288]);
    const sd15: ModelInfo = { ...model, width: 512, height: 512, sizeMultiple: 64 };
    assert.deepEqual(size('landscape_16_9', sd15, { ...limits, sizeMultiple: 64 }), [1024, 576]);
    assert.deepEqual(size('square_hd', sd15, { ...limits, maxSize: 768 }), [768, 768], 'clamped to maxSize');
    assert.deepEqual(size('square', { ...model, width: 64, height: 64 }, { ...limits, minSize: 128 }), [128, 128], 'clamped to minSize');
    const fixed: ModelInfo = { ...model, fixedSize: { width: 512, height: 512 } };
    for (const name of ['square', 'portrait_16_9', 'landscape_4_3']) assert.deepEqual(size(name, fixed), [512, 512]);
    for (const name of ['square', 'square_hd', 'portrait_4_3', 'portrait_16_9', 'landscape_4_3', 'landscape_16_9']) {
      assert.ok(throughNative({ prompt: 'x', image_size: name }).ok, name);
    }

    const unknown = refusal({ prompt: 'x', image_size: 'huge' });
    assert.deepEqual([unknown.code, unknown.loc, unknown.type], [ErrorCode.InvalidSize, ['body', 'image_size'], 'value_error']);
    assert.deepEqual(refusal({ prompt: 'x', image_size: 512 }).loc, ['body', 'image_size']);
    assert.deepEqual(refusal({ prompt: 'x', image_size: '__proto__' }).loc, ['body', 'image_size']);
    const wh = plan({ prompt: 'x', image_size: { width: 320, height: 192 } }).generate;
    assert.deepEqual([wh.width, wh.height], [320, 192]);
  });

  test('renamed fields: format/output_format, final_decoder, num_inference_steps', () => {
    const g = plan({ prompt: 'x', output_format: 'png', final_decoder: 'preview', num_inference_steps: 3 });
    assert.deepEqual([g.generate.format, g.formatField, g.generate.finalDecoder, g.generate.steps], ['png', 'output_format', 'preview', 3]);
    assert.equal(plan({ prompt: 'x', format: 'jpeg' }).generate.format, 'jpeg');
    assert.equal(refusal({ prompt: 'x', format: 'jpeg', output_format: 'png' }).code, ErrorCode.InvalidFormat);
  });

  test('accepted-and-ignored fields are type-checked; unknown fields and nulls are ignored', () => {
    const p = plan({
      prompt: 'x', guidance_scale: 1.5, negative_prompt: 'blur', enable_safety_checker: true, model_name: 'm',
      expand_prompt: false, num_images: 1, something_new: { a: 1 }, seed: null, image_url: null,
    });
    assert.deepEqual(p.generate, { prompt: 'x', previews: false, steps: 2 });
    for (const [field, value] of [
      ['guidance_scale', '1'], ['negative_prompt', 3], ['enable_safety_checker', 'yes'],
      ['model_name', 1], ['expand_prompt', 1], ['sync_mode', 'true'], ['stream_previews', 1],
      ['request_id', {}],
    ] as const) {
      const e = refusal({ prompt: 'x', [field]: value });
      assert.deepEqual([e.loc, e.type, e.code], [['body', field], 'type_error', ErrorCode.InvalidField], field);
    }
    for (const [field, value] of [['guidance_scale', -1], ['request_id', 'r'.repeat(129)]] as const) {
      const e = refusal({ prompt: 'x', [field]: value });
      assert.deepEqual([e.loc, e.type, e.code], [['body', field], 'value_error', ErrorCode.InvalidField], field);
    }
  });

  test('num_images: 1 to 8 over HTTP, 1 on a realtime socket', () => {
    assert.equal(plan({ prompt: 'x' }).numImages, 1);
    assert.equal(plan({ prompt: 'x', num_images: null }).numImages, 1);
    assert.equal(plan({ prompt: 'x', num_images: MAX_NUM_IMAGES }).numImages, 8);
    assert.equal('num_images' in plan({ prompt: 'x', num_images: 3 }).generate, false, 'not a native field');
    for (const value of [0, -1, 9]) {
      const e = refusal({ prompt: 'x', num_images: value });
      assert.deepEqual([e.loc, e.type, e.code], [['body', 'num_images'], 'value_error', ErrorCode.InvalidField], String(value));
      assert.match(e.message, /from 1 to 8/);
    }
    for (const value of [2.5, '2', true]) assert.equal(refusal({ prompt: 'x', num_images: value }).type, 'type_error', String(value));
    const realtime = mapFalInput({ prompt: 'x', num_images: 2 }, turbo, model, limits, { maxImages: 1 });
    assert.ok(!realtime.ok);
    assert.deepEqual(realtime.error.loc, ['body', 'num_images']);
    assert.match(realtime.error.message, /realtime connection answers each input with one image/);
    assert.ok(mapFalInput({ prompt: 'x', num_images: 1 }, turbo, model, limits, { maxImages: 1 }).ok);
  });

  test('prompt missing, or input not an object', () => {
    const missing = refusal({ image_url: 'data:image/png;base64,AA==' });
    assert.deepEqual([missing.loc, missing.type], [['body', 'prompt'], 'missing']);
    for (const input of [null, 'a cat', [1], PNG, 5]) assert.deepEqual(refusal(input).loc, ['body']);
  });
});

describe('native validation of mapped fal input, errors in fal terms', () => {
  test('in-range fal input passes as the native request', () => {
    const r = throughNative({ prompt: 'a cat', image_bytes: PNG, seed: 5, image_size: 'square', output_format: 'png' });
    assert.ok(r.ok);
    assert.deepEqual(
      [r.message.steps, r.message.strength, r.message.seed, r.message.width, r.message.format, r.message.previews],
      [2, 0.95, 5, 256, 'png', false],
    );
  });

  const cases: [Record<string, unknown>, string, (string | number)[], RegExp][] = [
    [{ num_inference_steps: 50 }, ErrorCode.InvalidSteps, ['body', 'num_inference_steps'], /^num_inference_steps must be an integer from 1 to 8/],
    [{ num_inference_steps: 'two' }, ErrorCode.InvalidSteps, ['body', 'num_inference_steps'], /^num_inference_steps/],
    [{ image_bytes: PNG, strength: 0 }, ErrorCode.InvalidStrength, ['body', 'strength'], /^strength must be/],
    [{ image_bytes: PNG, strength: 0.2, num_inference_steps: 2 }, ErrorCode.InvalidStrength, ['body', 'strength'], /^num_inference_steps x strength must be at least 1/],
    [{ seed: -1 }, ErrorCode.InvalidSeed, ['body', 'seed'], /^seed must be/],
    [{ image_size: { width: 300, height: 256 } }, ErrorCode.InvalidSize, ['body', 'image_size', 'width'], /^image_size\.width must be a multiple of 32/],
    [{ image_size: { width: 256, height: 4096 } }, ErrorCode.InvalidSize, ['body', 'image_size', 'height'], /^image_size\.height/],
    [{ format: 'gif' }, ErrorCode.InvalidFormat, ['body', 'format'], /^format must be one of/],
    [{ output_format: 'gif' }, ErrorCode.InvalidFormat, ['body', 'output_format'], /^output_format must be one of/],
    [{ final_decoder: 'fast' }, ErrorCode.InvalidFinalDecoder, ['body', 'final_decoder'], /^final_decoder must be one of/],
    [{ prompt: 'x'.repeat(1001) }, ErrorCode.PromptTooLong, ['body', 'prompt'], /^prompt has 1001 characters/],
    [{ prompt: 42 }, ErrorCode.InvalidField, ['body', 'prompt'], /^prompt must be a string/],
    [{ image_bytes: 'aGVsbG8=' }, ErrorCode.InvalidField, ['body', 'image_bytes'], /^image_bytes must be binary/],
    [{ image_bytes: new Uint8Array(0) }, ErrorCode.ImageUndecodable, ['body', 'image_bytes'], /^image_bytes is empty/],
  ];
  for (const [fields, code, loc, message] of cases) {
    test(`${JSON.stringify(fields).slice(0, 60)} -> ${code} at ${loc.join('.')}`, () => {
      const r = throughNative({ prompt: 'a cat', ...fields });
      assert.ok(!r.ok, 'native validation refuses it');
      assert.equal(r.error.code, code);
      assert.deepEqual(r.error.loc, loc);
      assert.match(r.error.message, message);
      assert.equal(r.error.type, code === ErrorCode.InvalidField ? 'type_error' : 'value_error');
    });
  }

  test('model-dependent refusals name the image field / final_decoder', () => {
    const noEncoder = throughNative({ prompt: 'x', image_bytes: PNG }, turbo, { ...model, img2img: false });
    assert.ok(!noEncoder.ok);
    assert.deepEqual([noEncoder.error.code, noEncoder.error.loc], [ErrorCode.Img2ImgUnsupported, ['body', 'image_bytes']]);
    const noPreview = throughNative({ prompt: 'x', final_decoder: 'preview' }, turbo, { ...model, finalDecoders: ['vae'] });
    assert.ok(!noPreview.ok);
    assert.deepEqual([noPreview.error.code, noPreview.error.loc], [ErrorCode.FinalDecoderUnavailable, ['body', 'final_decoder']]);
    const fixed = throughNative({ prompt: 'x', image_size: { width: 256, height: 256 } }, turbo, { ...model, fixedSize: { width: 512, height: 512 } });
    assert.ok(!fixed.ok);
    assert.deepEqual(fixed.error.loc, ['body', 'image_size']);
  });

  test('errors after image_url is resolved name image_url; decoder text is left alone', () => {
    const p = plan({ prompt: 'x', image_url: 'data:image/png;base64,AA==' });
    const e = falErrorFromNative(ErrorCode.ImageUndecodable, 'image header unreadable: image width is 0', p);
    assert.deepEqual(e.loc, ['body', 'image_url']);
    assert.equal(e.message, 'image_url header unreadable: image width is 0');
    assert.deepEqual(falErrorFromNative(ErrorCode.ImageTooLarge, 'image is 9000x9000; at most 16777216 pixels are accepted').loc, ['body', 'image_url']);
    const previews = falErrorFromNative(ErrorCode.InvalidField, 'previews must be a boolean');
    assert.deepEqual([previews.loc, previews.message], [['body', 'stream_previews'], 'stream_previews must be a boolean']);
    assert.deepEqual(falErrorFromNative(ErrorCode.InvalidField, 'id must be a non-empty string').loc, ['body']);
  });
});

describe('fal outputs', () => {
  const frame: FrameMessage = {
    type: 'frame', id: 1, image: PNG, format: 'png', width: 256, height: 192, seed: 42, decoder: 'vae',
    timings: { queue: 5, imageDecode: 1, textEncoder: 2, vaeEncoder: 3, steps: [20, 30], batchSizes: [1, 1], previews: 0, decode: 50, decodes: 1, encode: 4, total: 120 },
  };

  test('frame -> fal image output, content and/or url as the caller chose', () => {
    const p = plan({ prompt: 'a cat', request_id: 'abc' });
    const out = falImageResult(frame, { plan: p, prompt: 'a cat', image: { content: PNG } });
    assert.deepEqual(out, {
      images: [{ content: PNG, content_type: 'image/png', width: 256, height: 192 }],
      seed: 42, num_inference_steps: 2, prompt: 'a cat',
      timings: { inference: 0.1, queue: 0.005, total: 0.12 },
      has_nsfw_concepts: [false], nsfw_content_detected: [false], request_id: 'abc',
    });
    const url = dataUri(PNG, 'image/png');
    const both = falImageResult(frame, { plan: plan({ prompt: 'a cat' }), prompt: 'a cat', image: { content: PNG, url } });
    assert.deepEqual(Object.keys(both.images[0]), ['content', 'url', 'content_type', 'width', 'height']);
    assert.equal('request_id' in both, false, 'no request_id unless the input had one');
    const urlOnly = falImageResult(frame, { plan: plan({ prompt: 'a', request_id: 0 }), prompt: 'a', image: { url } });
    assert.deepEqual([Object.keys(urlOnly.images[0])[0], urlOnly.request_id], ['url', 0]);
  });

  test('several frames -> one output: every image, the first seed, the timings added up', () => {
    const second: FrameMessage = { ...frame, id: 2, seed: 43, format: 'jpeg', timings: { ...frame.timings, queue: 1, steps: [10, 10], decode: 30, total: 60 } };
    const out = falImagesResult([frame, second], { plan: plan({ prompt: 'a cat', num_images: 2 }), prompt: 'a cat', images: [{ url: 'u0' }, { url: 'u1' }] });
    assert.deepEqual(out.images, [
      { url: 'u0', content_type: 'image/png', width: 256, height: 192 },
      { url: 'u1', content_type: 'image/jpeg', width: 256, height: 192 },
    ]);
    assert.equal(out.seed, 42);
    assert.deepEqual(out.timings, { inference: 0.15, queue: 0.006, total: 0.18 });
    assert.deepEqual([out.has_nsfw_concepts, out.nsfw_content_detected], [[false, false], [false, false]]);
  });

  test('preview -> partial result', () => {
    const preview: PreviewMessage = { type: 'preview', id: 1, step: 1, steps: 4, image: PNG, width: 256, height: 256 };
    assert.deepEqual(falPreviewResult(preview, { plan: plan({ prompt: 'x', request_id: 'r' }), image: { content: PNG } }), {
      images: [{ content: PNG, content_type: 'image/jpeg', width: 256, height: 256 }],
      partial: true, step: 1, num_inference_steps: 4, request_id: 'r',
    });
    const ofSecond = falPreviewResult(preview, { plan: plan({ prompt: 'x', num_images: 2 }), image: { content: PNG }, imageIndex: 1 });
    assert.equal(ofSecond.image_index, 1, 'a num_images request says which image a preview shows');
  });

  test('data URIs and content types', () => {
    const bytes = new Uint8Array([0, 1, 2, 250, 251, 252]).subarray(1, 4);
    assert.equal(dataUri(bytes, 'image/jpeg'), `data:image/jpeg;base64,${Buffer.from([1, 2, 250]).toString('base64')}`);
    assert.deepEqual(['jpeg', 'png', 'webp'].map((f) => contentTypeOf(f as 'jpeg')), ['image/jpeg', 'image/png', 'image/webp']);
  });
});
