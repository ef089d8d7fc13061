// The drawing toolbar: colour swatches and picker, brush size, eraser, undo (also Ctrl/Cmd+Z) and clear.
import { byId } from './dom.js';
import type { DrawingPad } from './drawing.js';

const SWATCHES = ['#111111', '#1f4fd8', '#d83a3a', '#2fa84f', '#f2c230', '#8e44ad', '#ff8c1a', '#7fd3ff'];

export class DrawingTools {
  private readonly swatches: HTMLButtonElement[] = [];
  private readonly picker = byId<HTMLInputElement>('colour');
  private readonly eraser = byId<HTMLButtonElement>('eraser');

  constructor(private readonly pad: DrawingPad) {
    const container = byId('swatches');
    for (const colour of SWATCHES) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'swatch';
      button.title = colour;
      button.dataset.colour = colour;
      button.style.background = colour;
      button.addEventListener('click', () => this.setColour(colour));
      container.append(button);
      this.swatches.push(button);
    }
    this.picker.addEventListener('input', () => this.setColour(this.picker.value));
    const brush = byId<HTMLInputElement>('brush');
    brush.addEventListener('input', () => (pad.size = Number(brush.value)));
    pad.size = Number(brush.value);
    this.eraser.addEventListener('click', () => this.setErasing(!pad.erasing));
    byId('undo').addEventListener('click', () => pad.undo());
    byId('clear').addEventListener('click', () => pad.clear());
    document.addEventListener('keydown', (e) => {
      const target = e.target as HTMLElement | null;
      if (target?.closest('textarea, input')) return; // let text fields keep their own undo
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'z') {
        e.preventDefault();
        pad.undo();
      }
    });
    this.setColour(this.picker.value);
  }

  private setColour(colour: string): void {
    this.pad.colour = colour;
    this.picker.value = colour;
    for (const swatch of this.swatches) swatch.setAttribute('aria-pressed', String(swatch.dataset.colour === colour));
    this.setErasing(false);
  }

  private setErasing(erasing: boolean): void {
    this.pad.erasing = erasing;
    this.eraser.setAttribute('aria-pressed', String(erasing));
  }
}
