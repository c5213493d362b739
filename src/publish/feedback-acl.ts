/**
 * Who may publish on the embedded broker's command topics: verdicts (`<prefix>/<camera>/feedback`) and
 * model control (rollback, adapt/set) only from the users in `mqtt.feedback_users`.
 */
import type { Aedes, AuthenticateError, Client } from 'aedes';
import type { MqttConfig } from '../config/schema.js';
import { logger } from '../log.js';
import { adaptSetTopic, feedbackTopic, rollbackTopic } from './topics.js';

export interface FeedbackAcl {
  /** Topic prefix: `<prefix>/<camera>/feedback` is the feedback topic of each camera. */
  prefix: string;
  /** MQTT usernames allowed to publish verdicts. */
  users: readonly string[];
}

/**
 * Only the named MQTT users may publish to `<prefix>/+/feedback` on the embedded broker: a verdict
 * changes what the model learns, so it is not for every dashboard that can read the detections.
 * Installed on a created broker: it wraps the broker's `authenticate` (whatever it checks) to note
 * each client's username, which aedes does not keep, and replaces `authorizePublish`.
 *
 * The embedded broker checks a password only when it has one (mqtt.embedded.username/password), so
 * on a broker without passwords this separates roles on a trusted host; it is not authentication.
 */
export function restrictFeedbackPublishers(aedes: Aedes, acl: FeedbackAcl): void {
  const log = logger('broker');
  const users = new Set(acl.users);
  const usernames = new WeakMap<Client, string | undefined>();
  const authenticate = aedes.authenticate.bind(aedes);
  aedes.authenticate = (client, username, password, done) =>
    authenticate(client, username, password, (error: AuthenticateError | null, success: boolean | null) => {
      if (!error && success) usernames.set(client, username);
      done(error, success);
    });
  const authorizePublish = aedes.authorizePublish.bind(aedes);
  aedes.authorizePublish = (client, packet, callback) => {
    const control = isModelControlTopic(packet.topic, acl.prefix);
    if (client && (control || isFeedbackTopic(packet.topic, acl.prefix))) {
      const user = usernames.get(client);
      if (user === undefined || !users.has(user)) {
        log.limited(control ? 'refused model control' : 'refused feedback').warn(`refused ${control ? 'model control' : 'feedback'} on ${packet.topic} from client ${client.id} (user ${user === undefined ? 'none' : `"${user}"`} is not in mqtt.feedback_users)`);
        callback(new Error(control ? 'not allowed to control the model' : 'not allowed to publish feedback'));
        return;
      }
    }
    authorizePublish(client, packet, callback);
  };
}

/**
 * The MQTT users who may publish verdicts and adaptation control: mqtt.feedback_users, else, on the
 * embedded broker once it has a login (mqtt.embedded.username), that user. Undefined when no user is
 * configured: then any client of the broker may publish there, and the pipeline takes no `missed`
 * verdict from MQTT (feedback.missed_from). With an external broker, mqtt.feedback_users says that
 * its ACL lets only those users publish verdicts (README, "Who may send verdicts").
 */
export function feedbackPublishers(mqtt: Pick<MqttConfig, 'feedback_users' | 'embedded'> | undefined, embedded: boolean): string[] | undefined {
  if (mqtt?.feedback_users) return [...mqtt.feedback_users];
  const user = embedded ? mqtt?.embedded?.username : undefined;
  return user === undefined ? undefined : [user];
}

/** The camera level of `<prefix>/<camera>/...`, or undefined for a topic outside the prefix. */
function cameraOf(topic: string, prefix: string): string | undefined {
  if (!topic.startsWith(`${prefix}/`)) return undefined;
  return topic.slice(prefix.length + 1).split('/')[0];
}

/** A camera's verdict topic (topics.ts), exactly (rejections on `.../feedback/rejected` are the pipeline's). */
export function isFeedbackTopic(topic: string, prefix: string): boolean {
  const camera = cameraOf(topic, prefix);
  return camera !== undefined && topic === feedbackTopic(prefix, camera);
}

/** Adaptation control, operators only like verdicts: a camera's rollback and adapt/set topics (topics.ts). */
export function isModelControlTopic(topic: string, prefix: string): boolean {
  const camera = cameraOf(topic, prefix);
  return camera !== undefined && (topic === rollbackTopic(prefix, camera) || topic === adaptSetTopic(prefix, camera));
}
