// Framing of the skiff handler protocol (SPEC §1) for the Node SDK (see index.js): a 4-byte
// big-endian length, then the UTF-8 JSON body. FrameReader turns what a read brings into
// every whole frame it completes, parsed one at a time; resultsFrames() packs result bodies
// into `results` frames (protocol 1.4) written with one call.

export const DEFAULT_MAX_FRAME = 4 * 1024 * 1024;

export const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Encode one frame: 4-byte big-endian length, then UTF-8 JSON. */
export function encodeFrame(frame) {
  return frameOfText(JSON.stringify(frame));
}

// One frame from its body's JSON text, in one buffer.
function frameOfText(text) {
  const size = Buffer.byteLength(text, 'utf8');
  const out = Buffer.allocUnsafe(4 + size);
  out.writeUInt32BE(size, 0);
  out.write(text, 4, 'utf8');
  return out;
}

/** The frame in a body, or a `{ type: null, malformed }` marker when the body is not UTF-8
 *  JSON holding an object with a string `type` (the framing is intact: it is skipped). */
function parseBody(body, utf8) {
  let frame;
  try {
    frame = JSON.parse(utf8.decode(body));
  } catch (err) {
    return { type: null, malformed: `not UTF-8 JSON: ${err.message}` };
  }
  if (!isPlainObject(frame) || typeof frame.type !== 'string') {
    return { type: null, malformed: 'not an object with a string "type"' };
  }
  return frame;
}

/** Incremental frame decoder: push() bytes, get whole frames back, or each() them to a
 *  function as they are parsed (a malformed body gives a `{ type: null, malformed }` marker;
 *  a bad length throws: the framing is lost). The frames of one chunk are cut from it without
 *  copies; the chunks of a frame split over reads are joined once, when the last one arrives. */
export class FrameReader {
  #chunks = []; // the chunks of an unfinished frame
  #length = 0; // their bytes
  #need = 4; // the bytes #chunks must hold before a frame can be cut from them
  #utf8 = new TextDecoder('utf-8', { fatal: true });

  constructor(maxFrame = DEFAULT_MAX_FRAME) {
    this.maxFrame = maxFrame;
  }

  /** Returns the frames completed by `chunk`; throws on a malformed frame. */
  push(chunk) {
    const frames = [];
    this.each(chunk, (frame) => { frames.push(frame); });
    return frames;
  }

  /** Calls `onFrame(frame)` for each frame completed by `chunk`, one frame parsed at a time
   *  (a frame's work starts before the next frame of the read is parsed); stops early when
   *  onFrame returns false (the rest of the chunk is dropped: the caller is closing). Throws
   *  on a malformed frame, after the frames before it. */
  each(chunk, onFrame) {
    let data = chunk;
    if (this.#chunks.length > 0) {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
      if (this.#length < this.#need) return;
      data = Buffer.concat(this.#chunks, this.#length);
      this.#chunks = [];
      this.#length = 0;
    }
    let at = 0;
    this.#need = 4;
    while (data.length - at >= 4) {
      const size = data.readUInt32BE(at);
      if (size === 0 || size > this.maxFrame) {
        throw new Error(`frame of ${size} bytes (max ${this.maxFrame})`);
      }
      if (data.length - at - 4 < size) {
        this.#need = 4 + size;
        break;
      }
      const body = data.subarray(at + 4, at + 4 + size);
      at += 4 + size;
      if (onFrame(parseBody(body, this.#utf8)) === false) return;
    }
    if (at < data.length) {
      this.#chunks = [data.subarray(at)];
      this.#length = data.length - at;
    }
  }
}

const RESULTS_OPEN = '{"type":"results","results":[';
const RESULTS_CLOSE = ']}';
const RESULTS_SIZE = RESULTS_OPEN.length + RESULTS_CLOSE.length;

/** The result bodies (JSON texts, each checked to fit max_frame alone) as frames in one
 *  buffer: runs of several as `results` frames of at most `maxFrame` bytes, a lone one as
 *  itself. `batch` false: every body its own frame (skiff did not welcome batches). */
export function resultsFrames(bodies, maxFrame, batch) {
  if (!batch || bodies.length === 1) {
    return bodies.length === 1 ? frameOfText(bodies[0])
      : Buffer.concat(bodies.map(frameOfText));
  }
  const out = [];
  let start = 0;
  let size = RESULTS_SIZE;
  const closeRun = (end) => {
    if (end - start === 1) out.push(frameOfText(bodies[start]));
    else if (end > start) {
      out.push(frameOfText(RESULTS_OPEN + bodies.slice(start, end).join(',') + RESULTS_CLOSE));
    }
    start = end;
    size = RESULTS_SIZE;
  };
  for (let i = 0; i < bodies.length; i += 1) {
    const bytes = Buffer.byteLength(bodies[i], 'utf8');
    if (i > start && size + bytes + 1 > maxFrame) closeRun(i);
    size += bytes + 1;
  }
  closeRun(bodies.length);
  return out.length === 1 ? out[0] : Buffer.concat(out);
}
