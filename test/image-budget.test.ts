// The image memory budget's accounting, and the decode estimate it reserves, read from real headers.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { decodeMemoryBytes, readInputHeader } from '../server/imaging.js';
import { ImageBudget } from '../server/realtime/image-budget.js';

describe('ImageBudget', () => {
  test('reserves up to the limit and refuses beyond it', () => {
    const budget = new ImageBudget(100);
    const a = budget.reserve(60)!;
    assert.ok(a);
    assert.equal(budget.reserve(41), undefined);
    const b = budget.reserve(40)!;
    assert.equal(budget.reserved, 100);
    a.release();
    a.release();
    assert.equal(budget.reserved, 40, 'a second release gives nothing back twice');
    b.release();
    assert.equal(budget.reserved, 0);
  });

  test('a replacement takes the place of the reservation it replaces, even when the budget is full', () => {
    const budget = new ImageBudget(100);
    const older = budget.reserve(50)!;
    budget.reserve(50);
    const newer = budget.reserve(50, older);
    assert.ok(newer);
    assert.ok(older.released);
    assert.equal(budget.reserved, 100);
    assert.equal(budget.reserve(51, newer), undefined, 'a larger replacement must fit');
    assert.equal(newer.released, false, 'a refused replacement leaves the older reservation in place');
  });

  test('growing needs room, shrinking always works', () => {
    const budget = new ImageBudget(100);
    const r = budget.reserve(10)!;
    budget.reserve(50);
    assert.equal(r.resize(51), false);
    assert.equal(r.bytes, 10);
    assert.ok(r.resize(50));
    assert.ok(r.resize(3));
    assert.equal(budget.reserved, 53);
    r.release();
    assert.equal(r.resize(5), false, 'a released reservation stays released');
    assert.equal(budget.reserved, 50);
  });

  test('the retry hint stays within 100 ms and 5 s', () => {
    const budget = new ImageBudget(100);
    const hint = budget.retryAfterMs();
    assert.ok(Number.isInteger(hint) && hint >= 100 && hint <= 5000, String(hint));
  });
});

describe('decode memory estimate', () => {
  const flat = (width: number, height: number) => sharp({ create: { width, height, channels: 3, background: '#204080' } });

  test('from the header: raw pixels, more for progressive JPEG and interlaced PNG, plus the output twice', async () => {
    const out = 256 * 256 * 3;
    const baseline = await flat(1000, 500).jpeg().toBuffer();
    const header = await readInputHeader(baseline, 1 << 24);
    assert.deepEqual(header, { format: 'jpeg', width: 1000, height: 500, channels: 3, bytesPerSample: 1, progressive: false });
    assert.equal(decodeMemoryBytes(header, baseline.length, 256, 256), baseline.length + 1000 * 500 * 3 + 2 * out);

    const progressive = await flat(1000, 500).jpeg({ progressive: true }).toBuffer();
    const costlier = decodeMemoryBytes(await readInputHeader(progressive, 1 << 24), progressive.length, 256, 256);
    assert.ok(costlier >= progressive.length + 2 * 1000 * 500 * 3 + 2 * out, 'every DCT coefficient is held: 2 bytes a sample');

    const png16 = await flat(1000, 500).toColourspace('rgb16').png({ progressive: true }).toBuffer();
    const header16 = await readInputHeader(png16, 1 << 24);
    assert.equal(header16.bytesPerSample, 2);
    assert.ok(header16.progressive);
    assert.ok(decodeMemoryBytes(header16, png16.length, 256, 256) >= 1000 * 500 * 3 * 2 * 1.5);
  });

  test('the pixel limit is applied from the header', async () => {
    const image = await flat(300, 300).png().toBuffer();
    await assert.rejects(readInputHeader(image, 300 * 299), /at most 89700 pixels/);
  });
});
