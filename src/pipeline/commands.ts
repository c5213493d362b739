/**
 * The one place that handles incoming MQTT commands. It subscribes every command topic once and
 * routes each message to what it is for:
 *
 * - `<prefix>/<camera>/feedback`: the feedback intake (`submit`); its rejections are answered on
 *   `<prefix>/<camera>/feedback/rejected`; accepted verdicts go to the camera's adapter.
 * - `<prefix>/<camera>/model/rollback` (adapting cameras): the adapter's `rollback`; a refused one
 *   is answered on `<prefix>/<camera>/model/rollback/rejected` with the reason.
 * - `<prefix>/<camera>/adapt/set`: `on` | `off`, the adapter's `setEnabled`.
 *
 * It also publishes each adapter's status (retained on `<prefix>/<camera>/model`): the intake and
 * the adapters expose methods and observables, and never hold the publisher.
 */
import type { Subscription } from 'rxjs';
import type { SiteAdapter } from '../adapt/site-adapter.js';
import type { FeedbackIntake } from '../adapt/feedback.js';
import { errorMessage } from '../errors.js';
import { logger } from '../log.js';
import type { MqttPublisher } from '../publish/mqtt.js';
import { adaptSetTopic, feedbackRejectedTopic, feedbackTopic, modelTopic, rollbackRejectedTopic, rollbackTopic } from '../publish/topics.js';

export interface CommandRoutes {
  publisher: MqttPublisher;
  prefix: string;
  /** Every camera of the pipeline (each takes verdicts). */
  cameras: readonly string[];
  intake: FeedbackIntake;
  /** The broker lets only operators publish verdicts (mqtt.feedback_users, or the embedded broker's user). */
  mqttOperators: boolean;
  /** The adapting cameras' adapters, by camera. */
  adapters: ReadonlyMap<string, SiteAdapter>;
  /** How often an adapter's status is checked for a change (default 1000 ms). */
  statusIntervalMs?: number;
}

export interface CommandRouter {
  /** Stops routing verdicts and status (call after the adapters closed: their last status is published). */
  close(): void;
}

/** Logged under the component each command is for, as the intake and the adapters log. */
const feedbackLog = logger('feedback');
const adaptLog = logger('adapt');

/** Subscribes the command topics of every camera and routes their messages; see the file's comment. */
export function routeCommands(routes: CommandRoutes): CommandRouter {
  const { publisher, prefix, intake } = routes;
  const subscriptions: Subscription[] = [];
  for (const camera of routes.cameras) {
    publisher.subscribe(feedbackTopic(prefix, camera), (payload) => {
      // An exception here would escape into mqtt.js's event emitter and end the process.
      try {
        intake.submit(camera, payload, { via: 'mqtt', operator: routes.mqttOperators });
      } catch (err) {
        feedbackLog.error(`camera ${camera}: feedback failed: ${errorMessage(err)}`);
      }
    });
  }
  // QoS 0: a flood of bad verdicts must not fill the acknowledgement window detections need.
  subscriptions.push(
    intake.rejected$.subscribe(({ camera, rejection }) => publisher.publish(feedbackRejectedTopic(prefix, camera), JSON.stringify(rejection), { qos: 0, retain: false })),
    intake.accepted$.subscribe((feedback) => routes.adapters.get(feedback.camera)?.onVerdict(feedback)),
  );
  for (const [camera, adapter] of routes.adapters) {
    routeModelControl(publisher, prefix, camera, adapter);
    subscriptions.push(adapter.statusUpdates(routes.statusIntervalMs).subscribe((status) => publisher.publishState(modelTopic(prefix, camera), JSON.stringify(status))));
  }
  return {
    close() {
      for (const s of subscriptions) s.unsubscribe();
      subscriptions.length = 0;
    },
  };
}

/** An adapting camera's rollback and adapt/set topics. */
function routeModelControl(publisher: MqttPublisher, prefix: string, camera: string, adapter: SiteAdapter): void {
  publisher.subscribe(rollbackTopic(prefix, camera), (payload) => {
    const text = payload.toString('utf8');
    adapter.rollback(text).catch((err: unknown) => {
      publisher.publish(rollbackRejectedTopic(prefix, camera), JSON.stringify({ reason: errorMessage(err), received: text.slice(0, 200) }), { qos: 1, retain: false });
    });
  });
  const setTopic = adaptSetTopic(prefix, camera);
  publisher.subscribe(setTopic, (payload) => {
    const text = payload.toString('utf8').trim().toLowerCase();
    if (text === 'on' || text === 'off') adapter.setEnabled(text === 'on');
    else adaptLog.limited(setTopic).warn(`${camera}: ${setTopic}: "${text.slice(0, 50)}" is neither on nor off; ignored`);
  });
}
