import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { countSensorDiscovery, entitySlug, snapshotImageDiscovery } from '../src/publish/home-assistant.js';

/**
 * The options Home Assistant's MQTT platforms document (home-assistant.io, integrations sensor.mqtt
 * and image.mqtt, and MQTT discovery's `origin`), for the keys these payloads use: a payload key
 * outside them, a missing required one or a wrong combination fails here. Home Assistant removed
 * `object_id` (2026.4) in favour of `default_entity_id`, a whole entity id.
 */
const COMMON = ['availability_topic', 'payload_available', 'payload_not_available', 'default_entity_id', 'device', 'origin', 'unique_id', 'name', 'icon', 'enabled_by_default', 'entity_category', 'json_attributes_topic'];
const SENSOR = [...COMMON, 'state_topic', 'state_class', 'device_class', 'unit_of_measurement', 'value_template', 'expire_after', 'force_update'];
const IMAGE = [...COMMON, 'image_topic', 'url_topic', 'content_type', 'image_encoding', 'url_template'];
const DEVICE = ['identifiers', 'connections', 'name', 'manufacturer', 'model', 'hw_version', 'sw_version', 'serial_number', 'suggested_area', 'via_device', 'configuration_url'];
const ORIGIN = ['name', 'sw_version', 'support_url'];
/** Home Assistant's valid_entity_id: domain and object id of lowercase letters, digits and single inner underscores. */
const ENTITY_ID = /^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$/;

const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

function checkCommon(payload: Record<string, unknown>, domain: string, allowed: string[]): void {
  for (const key of Object.keys(payload)) expect(allowed, `undocumented option ${key}`).toContain(key);
  expect(payload).not.toHaveProperty('object_id');
  expect(payload.default_entity_id).toMatch(ENTITY_ID);
  expect(String(payload.default_entity_id).split('.')[0]).toBe(domain);
  expect(payload.unique_id).toEqual(expect.any(String));
  const device = payload.device as Record<string, unknown>;
  for (const key of Object.keys(device)) expect(DEVICE, `undocumented device option ${key}`).toContain(key);
  expect((device.identifiers as string[]).length).toBeGreaterThan(0);
  const origin = payload.origin as Record<string, unknown>;
  for (const key of Object.keys(origin)) expect(ORIGIN, `undocumented origin option ${key}`).toContain(key);
  expect(origin).toEqual({ name: 'Beats', sw_version: version });
}

const options = { discoveryPrefix: 'homeassistant', prefix: 'beats', camera: 'highway', label: 'car', model: 'yolox-nano' };

describe('Home Assistant discovery', () => {
  it('a count sensor: documented options only, default_entity_id instead of object_id, the origin block', () => {
    const message = countSensorDiscovery({ ...options, zone: 'near' });
    expect(message.topic).toBe('homeassistant/sensor/beats_highway_near_car_count/config');
    const payload = JSON.parse(message.payload) as Record<string, unknown>;
    checkCommon(payload, 'sensor', SENSOR);
    expect(payload).toMatchObject({
      name: 'near car count',
      unique_id: 'beats_highway_near_car_count',
      default_entity_id: 'sensor.beats_highway_near_car_count',
      state_topic: 'beats/highway/near/car',
      availability_topic: 'beats/availability',
      state_class: 'measurement',
      device: { identifiers: ['beats_highway'], name: 'Beats highway', manufacturer: 'Beats', model: 'yolox-nano' },
    });
  });

  it("a label's snapshot as an image entity reading the raw JPEG on its snapshot topic", () => {
    const message = snapshotImageDiscovery(options);
    expect(message.topic).toBe('homeassistant/image/beats_highway_car_snapshot/config');
    const payload = JSON.parse(message.payload) as Record<string, unknown>;
    checkCommon(payload, 'image', IMAGE);
    expect(payload).toMatchObject({
      name: 'car snapshot',
      default_entity_id: 'image.beats_highway_car_snapshot',
      image_topic: 'beats/highway/car/snapshot',
      content_type: 'image/jpeg',
    });
    // Exactly one of image_topic and url_topic; content_type only with image_topic; no base64 (raw bytes).
    expect(payload).not.toHaveProperty('url_topic');
    expect(payload).not.toHaveProperty('image_encoding');
  });

  it('names that are no entity id (capitals, dashes, spaces) still give a valid default_entity_id; topics and unique ids keep them', () => {
    const message = countSensorDiscovery({ ...options, prefix: 'Site-A', camera: 'Front Door', label: 'traffic light' });
    const payload = JSON.parse(message.payload) as Record<string, unknown>;
    expect(message.topic).toBe('homeassistant/sensor/Site-A_Front_Door_traffic_light_count/config');
    expect(payload.unique_id).toBe('Site-A_Front_Door_traffic_light_count');
    expect(payload.default_entity_id).toBe('sensor.site_a_front_door_traffic_light_count');
    expect(payload.default_entity_id).toMatch(ENTITY_ID);
    expect(entitySlug('__A--b__')).toBe('a_b');
    expect(entitySlug('---')).toBe('beats');
  });
});
