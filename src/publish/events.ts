import type { EventOutput } from './messages.js';
import { countSensorDiscovery, snapshotImageDiscovery, type DiscoveryMessage } from './home-assistant.js';
import { countTopic, eventsTopic, snapshotTopic } from './topics.js';
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

  /** Home Assistant discovery (retained) for a state topic, once, before its first value. */
  private announce(stateTopic: string, discovery: (ha: { discoveryPrefix: string }) => DiscoveryMessage): void {
    const ha = this.options.homeAssistant;
    if (!ha || this.announced.has(stateTopic)) return;
    this.announced.add(stateTopic);
    const message = discovery(ha);
    this.options.publisher.publishState(message.topic, message.payload);
  }

  async publish(output: EventOutput): Promise<void> {
    const { publisher, prefix, camera } = this.options;
    const snapshots = this.options.snapshots;
    if (snapshots) {
      for (const request of output.snapshots) {
        const images = await renderSnapshot(request.frame, request.box, snapshots.quality);
        await snapshots.store.save(camera, request.event.id, images);
        const topic = snapshotTopic(prefix, camera, request.event.label);
        this.announce(topic, (ha) => snapshotImageDiscovery({ discoveryPrefix: ha.discoveryPrefix, prefix, camera, label: request.event.label, model: this.options.modelName }));
        publisher.publishState(topic, images.full);
      }
    }
    for (const change of output.counts) {
      const topic = countTopic(prefix, camera, change.label, change.zone);
      this.announce(topic, (ha) => countSensorDiscovery({ discoveryPrefix: ha.discoveryPrefix, prefix, camera, label: change.label, zone: change.zone, model: this.options.modelName }));
      publisher.publishState(topic, String(change.count));
    }
    for (const message of output.messages) await publisher.publishDurable(eventsTopic(prefix), JSON.stringify(message), 1);
  }
}
