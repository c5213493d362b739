/** What a detector finds in a frame: the vocabulary that tracking, publishing and adaptation share. */
export interface Detection {
  label: string;
  classId: number;
  score: number;
  /** [x1, y1, x2, y2] in source-frame pixels. */
  box: [number, number, number, number];
}
