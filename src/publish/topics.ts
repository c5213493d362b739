/** The MQTT topics of a pipeline, under its prefix (`beats` by default): one place names them all. */

/** Retained `online` / `offline` of the pipeline (also its last will). */
export const availabilityTopic = (prefix: string): string => `${prefix}/availability`;
/** Every frame's detections (DetectionsMessage). */
export const detectionsTopic = (prefix: string, camera: string): string => `${prefix}/${camera}/detections`;
/** Event lifecycle messages of every camera (EventMessage), durable. */
export const eventsTopic = (prefix: string): string => `${prefix}/events`;

/** The retained count of a label on a camera, or in one of its zones. */
export function countTopic(prefix: string, camera: string, label: string, zone?: string): string {
  return zone ? `${prefix}/${camera}/${zone}/${label}` : `${prefix}/${camera}/${label}`;
}

/** The retained JPEG of a label's latest event on a camera. */
export function snapshotTopic(prefix: string, camera: string, label: string): string {
  return `${prefix}/${camera}/${label}/snapshot`;
}

/** Operator verdicts on a camera's detections, and the answers to refused ones. */
export const feedbackTopic = (prefix: string, camera: string): string => `${prefix}/${camera}/feedback`;
export const feedbackRejectedTopic = (prefix: string, camera: string): string => `${prefix}/${camera}/feedback/rejected`;

/** An adapting camera's status (ModelStatusMessage, retained), its rollback command and answer, its on/off switch. */
export const modelTopic = (prefix: string, camera: string): string => `${prefix}/${camera}/model`;
export const rollbackTopic = (prefix: string, camera: string): string => `${prefix}/${camera}/model/rollback`;
export const rollbackRejectedTopic = (prefix: string, camera: string): string => `${prefix}/${camera}/model/rollback/rejected`;
export const adaptSetTopic = (prefix: string, camera: string): string => `${prefix}/${camera}/adapt/set`;
