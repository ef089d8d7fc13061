// The generation settings: prompt, strength, steps and seed. Ranges follow the server's `hello`,
// and strength is raised where needed so that an image-to-image request always runs at least one
// step (the server rejects steps x strength < 1 for Euler models, strength x 50 < steps for LCM).
import type { ModelInfo } from '../client/index.js';
import { byId } from './dom.js';

export interface Settings {
  prompt: string;
  steps: number;
  seed: number;
  /** As chosen on the slider; see `strengthFor` for what is sent. */
  strength: number;
}

const MAX_SEED = 4294967295;

export class Controls {
  private readonly prompt = byId<HTMLTextAreaElement>('prompt');
  private readonly strength = byId<HTMLInputElement>('strength');
  private readonly steps = byId<HTMLInputElement>('steps');
  private readonly seed = byId<HTMLInputElement>('seed');
  private readonly strengthValue = byId<HTMLOutputElement>('strength-value');
  private readonly stepsValue = byId<HTMLOutputElement>('steps-value');

  constructor(onChange: () => void) {
    // `input` fires on every keystroke and slider move: prompt-as-you-type.
    for (const element of [this.prompt, this.strength, this.steps, this.seed]) {
      element.addEventListener('input', () => {
        this.showValues();
        onChange();
      });
    }
    byId('seed-random').addEventListener('click', () => {
      this.seed.value = String(Math.floor(Math.random() * MAX_SEED));
      onChange();
    });
    this.showValues();
  }

  /** The model's step range; its default step count on first connect. */
  applyModel(model: ModelInfo, first: boolean): void {
    this.steps.min = String(model.minSteps);
    this.steps.max = String(model.maxSteps);
    if (first) this.steps.value = String(model.defaultSteps);
    this.showValues();
  }

  read(): Settings {
    const seed = Math.trunc(Number(this.seed.value));
    return {
      prompt: this.prompt.value,
      steps: Number(this.steps.value),
      seed: Number.isFinite(seed) ? Math.min(MAX_SEED, Math.max(0, seed)) : 0,
      strength: Number(this.strength.value),
    };
  }

  /** The strength to send: the slider's, raised to the smallest that still runs one step. */
  static strengthFor(settings: Settings, model: ModelInfo): number {
    const { steps, strength } = settings;
    const runs = model.scheduler === 'lcm' ? strength * 50 >= steps : Math.floor(steps * strength) >= 1;
    if (runs) return strength;
    const minimum = model.scheduler === 'lcm' ? steps / 50 : 1 / steps;
    // A hair above the minimum so that floor(steps x strength) cannot round down to 0.
    return Math.min(1, minimum + 1e-6);
  }

  private showValues(): void {
    this.strengthValue.value = Number(this.strength.value).toFixed(2);
    this.stepsValue.value = this.steps.value;
  }
}
