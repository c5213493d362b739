import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { isFeedbackTopic, isModelControlTopic } from '../src/publish/feedback-acl.js';
import { startEmbeddedBroker } from '../src/publish/broker.js';
import { sleep, waitFor } from './helpers/brokers.js';

describe('adaptation control topics on the embedded broker', () => {
  it('are recognised exactly', () => {
    expect(isModelControlTopic('beats/cam/model/rollback', 'beats')).toBe(true);
    expect(isModelControlTopic('beats/cam/adapt/set', 'beats')).toBe(true);
    expect(isModelControlTopic('beats/cam/model', 'beats')).toBe(false);
    expect(isModelControlTopic('beats/cam/model/rollback/rejected', 'beats')).toBe(false);
    expect(isModelControlTopic('other/cam/adapt/set', 'beats')).toBe(false);
    expect(isFeedbackTopic('beats/cam/model/rollback', 'beats')).toBe(false);
  });

  it('only mqtt.feedback_users may roll back or pause adaptation', async () => {
    const broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0, feedbackUsers: { prefix: 'beats', users: ['operator'] } });
    const watcher = await mqtt.connectAsync(broker.url, { username: 'operator' });
    const dashboard = await mqtt.connectAsync(broker.url, { username: 'dashboard' });
    const operator = await mqtt.connectAsync(broker.url, { username: 'operator' });
    try {
      const seen: string[] = [];
      watcher.on('message', (topic, payload) => seen.push(`${topic} ${payload.toString()}`));
      await watcher.subscribeAsync(['beats/+/model/rollback', 'beats/+/adapt/set']);
      dashboard.publish('beats/cam/model/rollback', 'base', { qos: 0 });
      dashboard.publish('beats/cam/adapt/set', 'off', { qos: 0 });
      await sleep(200);
      await operator.publishAsync('beats/cam/model/rollback', '2', { qos: 1 });
      await operator.publishAsync('beats/cam/adapt/set', 'on', { qos: 1 });
      await waitFor(() => seen.length >= 2 || undefined, 5000, "the operator's messages");
      await sleep(200);
      expect(seen).toEqual(['beats/cam/model/rollback 2', 'beats/cam/adapt/set on']);
    } finally {
      watcher.end(true);
      dashboard.end(true);
      operator.end(true);
      await broker.close();
    }
  });
});
