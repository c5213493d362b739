/**
 * The in-process backend: onnxruntime on the calling thread, one frame per run. onnxruntime-node's
 * `run` blocks the event loop while it computes, so a pipeline with this backend does nothing else
 * meanwhile; tools that run one model alone (evaluation, teachers, benchmarks) use it.
 */
import type * as ort from 'onnxruntime-node';
import type { ProviderName } from '../providers.js';
import { countRun, emptyStats, type BackendStats, type DetectorBackend, type InferItem, type InferResult } from './backend.js';
import { runBatch, type ModelShape } from './run-batch.js';

export class InProcessBackend implements DetectorBackend {
  readonly kind = 'in-process';
  readonly maxBatch = 1;
  private readonly counts = emptyStats();

  constructor(
    private readonly session: ort.InferenceSession,
    readonly provider: ProviderName,
    private readonly shape: ModelShape,
  ) {}

  async infer(item: InferItem): Promise<InferResult> {
    const started = performance.now();
    try {
      const [candidates] = await runBatch(this.session, this.shape, [item]);
      countRun(this.counts, 1);
      this.counts.busyMs += performance.now() - started;
      return { candidates: candidates!, input: item.input };
    } catch (err) {
      this.counts.failedFrames++;
      throw err;
    }
  }

  attach(): () => void {
    return () => undefined;
  }

  stats(): BackendStats {
    return { ...this.counts, batchSizes: [...this.counts.batchSizes] };
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
