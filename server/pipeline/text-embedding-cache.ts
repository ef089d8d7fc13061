// Bounded LRU of text-encoder outputs by prompt. Realtime clients resend the same prompt with every
// camera or drawing frame, so most requests skip the text encoder.

export interface TextEmbedding {
  data: Float32Array;
  dims: number[];
}

export class TextEmbeddingCache {
  // A Map iterates in insertion order: re-inserting on hit keeps the oldest entry first.
  private readonly entries = new Map<string, TextEmbedding>();

  constructor(private readonly capacity: number) {}

  get(prompt: string): TextEmbedding | undefined {
    const hit = this.entries.get(prompt);
    if (hit) {
      this.entries.delete(prompt);
      this.entries.set(prompt, hit);
    }
    return hit;
  }

  set(prompt: string, embedding: TextEmbedding): void {
    this.entries.delete(prompt);
    this.entries.set(prompt, embedding);
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
