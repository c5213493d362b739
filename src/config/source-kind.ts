/** What kind of source a `source.url` names; decides how ffmpeg opens it and how it is paced. */
export type SourceKind = 'file' | 'rtsp' | 'http' | 'v4l2' | 'testsrc' | 'synthetic';

export function sourceKind(url: string): SourceKind {
  if (/^rtsps?:\/\//i.test(url)) return 'rtsp';
  if (/^https?:\/\//i.test(url)) return 'http';
  if (url.startsWith('/dev/video')) return 'v4l2';
  if (url.startsWith('testsrc:')) return 'testsrc';
  if (url.startsWith('synthetic:')) return 'synthetic';
  return 'file';
}

/** Live sources never end on their own: an end or a stall means the camera dropped. */
export function isLive(kind: SourceKind): boolean {
  return kind !== 'file' && kind !== 'synthetic';
}
