/**
 * What the live page's model panel shows of a camera: which model it runs, its version history and
 * the adaptation curves. Adapting cameras answer through their CameraAdapter
 * (`adaptiveModelHistory`); `baseModelHistory` answers for the others: adaptation off, the base model
 * as the only version.
 */

export interface ModelVersion {
  version: string;
  /** The version it was trained from; absent for the base model. */
  parent?: string;
  /** Epoch seconds. */
  created: number;
  /** In use now. */
  current: boolean;
  note?: string;
}

export interface AdaptationCurve {
  /** e.g. "holdout loss", "windowed F1". */
  name: string;
  unit?: string;
  /** [epoch seconds, value], oldest first. */
  points: Array<[number, number]>;
}

export interface ModelHistory {
  model: { name: string; version: string };
  adaptation: 'off' | 'on' | 'paused';
  versions: ModelVersion[];
  curves: AdaptationCurve[];
}

export interface ModelHistorySource {
  history(camera: string): ModelHistory | undefined | Promise<ModelHistory | undefined>;
}

export function baseModelHistory(models: ReadonlyMap<string, { name: string; version: string }>, startedAt = Date.now()): ModelHistorySource {
  return {
    history(camera) {
      const model = models.get(camera);
      if (!model) return undefined;
      return {
        model,
        adaptation: 'off',
        versions: [{ version: model.version, created: Math.round(startedAt / 1000), current: true, note: 'base model' }],
        curves: [],
      };
    },
  };
}
