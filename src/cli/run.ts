import { loadPipelineFile } from '../config/load.js';
import { logger } from '../log.js';
import { runPipeline } from '../pipeline.js';

const log = logger('run');

export async function runCommand(file: string, opts: { maxFrames?: number; broker?: string }): Promise<void> {
  const loaded = await loadPipelineFile(file);
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts++;
    if (interrupts > 1) {
      log.warn(`${signal} again: exiting now`);
      process.exit(130);
    }
    log.info(`${signal}: stopping (again to force)`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const summary = await runPipeline(loaded, { maxFrames: opts.maxFrames, brokerUrl: opts.broker, signal: controller.signal });
    for (const [name, s] of Object.entries(summary.cameras)) {
      log.info(`camera ${name}: ${s.processed} frames processed, ${s.source.dropped} dropped, ${s.detections} detections, ${s.source.restarts} restarts`);
    }
    log.info(`mqtt: ${summary.mqtt.published} messages sent, ${summary.mqtt.dropped} dropped`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
