/**
 * Home Assistant MQTT discovery: one sensor per count topic, so "how many people are in the
 * loading zone" appears in Home Assistant without writing YAML there, and one image entity per
 * label showing its latest snapshot. Config messages are retained, so Home Assistant finds them
 * after its own restarts. Field names follow Home Assistant's MQTT sensor and image platforms
 * (test/home-assistant.test.ts checks them against the documented options).
 */
import { packageVersion } from '../version.js';
import { availabilityTopic, countTopic, snapshotTopic } from './topics.js';

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

/** What a discovery topic's object id and a unique_id may hold. */
const slug = (s: string) => s.replace(/[^a-zA-Z0-9_-]/g, '_');

/** An entity id's object part: lowercase letters, digits and single underscores, none at either end. */
export function entitySlug(s: string): string {
  const cleaned = s.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '');
  return cleaned || 'beats';
}

/** The application that published the discovery message (Home Assistant logs it). */
const origin = () => ({ name: 'Beats', sw_version: packageVersion });

function common(o: DiscoveryOptions, domain: 'sensor' | 'image', objectId: string) {
  return {
    unique_id: objectId,
    default_entity_id: `${domain}.${entitySlug(objectId)}`,
    availability_topic: availabilityTopic(o.prefix),
    payload_available: 'online',
    payload_not_available: 'offline',
    device: {
      identifiers: [slug(`${o.prefix}_${o.camera}`)],
      name: `Beats ${o.camera}`,
      manufacturer: 'Beats',
      model: o.model,
    },
    origin: origin(),
  };
}

export function countSensorDiscovery(o: DiscoveryOptions): DiscoveryMessage {
  const objectId = slug(`${o.prefix}_${o.camera}_${o.zone ? `${o.zone}_` : ''}${o.label}_count`);
  return {
    topic: `${o.discoveryPrefix}/sensor/${objectId}/config`,
    payload: JSON.stringify({
      name: o.zone ? `${o.zone} ${o.label} count` : `${o.label} count`,
      ...common(o, 'sensor', objectId),
      state_topic: countTopic(o.prefix, o.camera, o.label, o.zone),
      state_class: 'measurement',
      icon: o.label === 'person' ? 'mdi:account-multiple' : o.label === 'car' ? 'mdi:car-multiple' : 'mdi:counter',
    }),
  };
}

/** An image entity showing the label's snapshot topic (raw JPEG bytes, as published). */
export function snapshotImageDiscovery(o: Omit<DiscoveryOptions, 'zone'>): DiscoveryMessage {
  const objectId = slug(`${o.prefix}_${o.camera}_${o.label}_snapshot`);
  return {
    topic: `${o.discoveryPrefix}/image/${objectId}/config`,
    payload: JSON.stringify({
      name: `${o.label} snapshot`,
      ...common(o, 'image', objectId),
      image_topic: snapshotTopic(o.prefix, o.camera, o.label),
      content_type: 'image/jpeg',
    }),
  };
}
