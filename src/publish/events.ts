import type { EventOutput } from '../track/events.js';
import { countSensorDiscovery, countTopic } from './home-assistant.js';
import type { MqttPublisher } from './mqtt.js';
import { renderSnapshot, type SnapshotStore } from './snapshots.js';

export interface EventPublisherOptions {
  publisher: MqttPublisher;
  prefix: string;
  camera: string;
  modelName: string;
  snapshots?: { store: SnapshotStore; quality: number };
  homeAssistant?: { discoveryPrefix: string };
}

/**
 * One camera's event output onto MQTT: snapshots first (so a `new` event that says it has one finds
 * it retained), then counts (retained state), then the events themselves through the durable outbox.
 */
export class EventPublisher {
  private readonly announced = new Set<string>();

  constructor(private readonly options: EventPublisherOptions) {}

  async publish(output: EventOutput): Promise<void> {
    const { publisher, prefix, camera } = this.options;
    const snapshots = this.options.snapshots;
    if (snapshots) {
      for (const request of output.snapshots) {
        const images = await renderSnapshot(request.frame, request.box, snapshots.quality);
        await snapshots.store.save(camera, request.event.id, images);
        publisher.publishState(`${prefix}/${camera}/${request.event.label}/snapshot`, images.full);
      }
    }
    for (const change of output.counts) {
      const topic = countTopic(prefix, camera, change.label, change.zone);
      const ha = this.options.homeAssistant;
      if (ha && !this.announced.has(topic)) {
        this.announced.add(topic);
        const discovery = countSensorDiscovery({ discoveryPrefix: ha.discoveryPrefix, prefix, camera, label: change.label, zone: change.zone, model: this.options.modelName });
        publisher.publishState(discovery.topic, discovery.payload);
      }
      publisher.publishState(topic, String(change.count));
    }
    for (const message of output.messages) await publisher.publishDurable(`${prefix}/events`, JSON.stringify(message), 1);
  }
}
