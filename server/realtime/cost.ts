// What a request costs the inference process, in units of the model's own default request (its
// default size at its default steps = 1). UNet, preview and decoder work all grow with the pixel
// count, and the sampler runs one UNet call per step, so pixels x steps is the measure; for
// image-to-image only the steps that will actually run count (floor(steps x strength) for Euler,
// as the sampler computes it; LCM always runs `steps`).
import type { ModelInfo } from '../../shared/protocol.js';
import { img2imgStepCount } from '../pipeline/schedulers.js';

/** The parts of a request that decide its cost. */
export interface JobShape {
  width: number;
  height: number;
  steps: number;
  strength: number;
  /** Image-to-image: only part of the schedule runs. */
  image: boolean;
}

export type CostModel = Pick<ModelInfo, 'width' | 'height' | 'defaultSteps' | 'scheduler'>;

export function stepsToRun(job: JobShape, scheduler: ModelInfo['scheduler']): number {
  if (!job.image || scheduler === 'lcm') return job.steps;
  return img2imgStepCount(job.steps, job.strength);
}

export function requestCost(job: JobShape, model: CostModel): number {
  // A request the sampler will refuse (0 steps to run) still costs its round trip: never 0, so a
  // session cannot get service for free.
  const steps = Math.max(1, stepsToRun(job, model.scheduler));
  return ((job.width * job.height) / (model.width * model.height)) * (steps / model.defaultSteps);
}
