/**
 * The publish step of a camera's chain: counts the frame, publishes its detections, and hands its
 * event output to the camera's event queue, where events leave the frame path.
 */
import { concatMap, from, map, type OperatorFunction } from 'rxjs';
import type { CameraConfig } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { EventQueue } from '../publish/event-queue.js';
import type { EventPublisher } from '../publish/events.js';
import { detectionsMessage, type EventMessage } from '../publish/messages.js';
import type { MqttPublisher } from '../publish/mqtt.js';
import type { CameraStats, FrameResult } from './types.js';

/**
 * A camera's event queue: the next frame goes on while snapshots render and events are written to
 * the outbox, in order. Backpressure: 32 frames' outputs waiting hold the frame path. An event is
 * announced (`onEvent`: the live page, tests) once published, so its snapshot exists.
 */
export function cameraEventQueue(camera: CameraConfig, events: EventPublisher, log: Logger, onEvent?: (message: EventMessage) => void): EventQueue {
  return new EventQueue({
    publish: async (output) => {
      await events.publish(output);
      output.messages.forEach((m) => onEvent?.(m));
    },
    maxPending: 32,
    onError: (err, output) => log.error(`camera ${camera.name}: event output not published (${output.messages.map((m) => `${m.type} ${m.after.id}`).join(', ') || 'counts and snapshots only'}): ${errorMessage(err)}`),
  });
}

export function publish(
  camera: CameraConfig,
  model: { name: string; version: string },
  publisher: MqttPublisher,
  eventQueue: EventQueue,
  stats: CameraStats,
): OperatorFunction<FrameResult, FrameResult> {
  return concatMap((result) => {
    stats.processed++;
    stats.detections += result.detections.length;
    if (result.detections.length > 0) publisher.publishDetections(detectionsMessage(camera.name, result.frame, result.servedBy ?? model, result.detections));
    // The frame's latency ends here, with its detections handed to the MQTT client (none found: the same point).
    if (result.frame.decodedAt !== undefined) stats.latency.add(performance.now() - result.frame.decodedAt);
    return from(eventQueue.push(result.events)).pipe(map(() => result));
  });
}
