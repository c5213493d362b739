/**
 * Home Assistant MQTT discovery: one sensor per count topic, so "how many people are in the
 * loading zone" appears in Home Assistant without writing YAML there. Config messages are
 * retained, so Home Assistant finds them after its own restarts.
 */
export interface DiscoveryOptions {
  /** Home Assistant's discovery prefix, `homeassistant` by default. */
  discoveryPrefix: string;
  /** The pipeline's topic prefix, `beats` by default. */
  prefix: string;
  camera: string;
  label: string;
  zone?: string;
  model: string;
}

export interface DiscoveryMessage {
  topic: string;
  payload: string;
}

const slug = (s: string) => s.replace(/[^a-zA-Z0-9_-]/g, '_');

export function countTopic(prefix: string, camera: string, label: string, zone?: string): string {
  return zone ? `${prefix}/${camera}/${zone}/${label}` : `${prefix}/${camera}/${label}`;
}

export function countSensorDiscovery(o: DiscoveryOptions): DiscoveryMessage {
  const objectId = slug(`${o.prefix}_${o.camera}_${o.zone ? `${o.zone}_` : ''}${o.label}_count`);
  return {
    topic: `${o.discoveryPrefix}/sensor/${objectId}/config`,
    payload: JSON.stringify({
      name: o.zone ? `${o.zone} ${o.label} count` : `${o.label} count`,
      unique_id: objectId,
      object_id: objectId,
      state_topic: countTopic(o.prefix, o.camera, o.label, o.zone),
      availability_topic: `${o.prefix}/availability`,
      payload_available: 'online',
      payload_not_available: 'offline',
      state_class: 'measurement',
      icon: o.label === 'person' ? 'mdi:account-multiple' : o.label === 'car' ? 'mdi:car-multiple' : 'mdi:counter',
      device: {
        identifiers: [slug(`${o.prefix}_${o.camera}`)],
        name: `Beats ${o.camera}`,
        manufacturer: 'Beats',
        model: o.model,
      },
    }),
  };
}
