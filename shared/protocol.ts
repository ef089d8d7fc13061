// The realtime wire protocol: every message name, error code, close code and the protocol version
// live here once. Server, client and bench import these; docs/protocol.md documents them.
// Message names and fields are public API: extend, never rename.

/** Bumped on any incompatible change; sent in `hello`. */
export const PROTOCOL_VERSION = 1;

export const REALTIME_PATH = '/v1/realtime';

export const IMAGE_FORMATS = ['jpeg', 'webp', 'png'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

/**
 * What turns the final latent into the frame: `vae`, the model's full VAE decoder (best quality), or
 * `preview`, its tiny TAESD-style preview decoder (a fraction of the cost, a little softer).
 */
export const FINAL_DECODERS = ['vae', 'preview'] as const;
export type FinalDecoder = (typeof FINAL_DECODERS)[number];

/** Client-chosen request id, echoed back on every reply about that request. */
export type RequestId = string | number;

// ---------------------------------------------------------------- client -> server

export interface GenerateMessage {
  type: 'generate';
  id: RequestId;
  prompt: string;
  /** Encoded JPEG, PNG or WebP bytes: switches to image-to-image. */
  image?: Uint8Array;
  /** Image-to-image only: how much of the image is re-noised, (0, 1]. steps x strength must be >= 1. */
  strength?: number;
  steps?: number;
  /** Unsigned 32-bit; the server picks one when absent and reports it in `frame`. */
  seed?: number;
  width?: number;
  height?: number;
  /** Encoding of the final frame; previews are always JPEG. */
  format?: ImageFormat;
  /** Stream a preview after every step but the last (default true): the frame is the last step's image. */
  previews?: boolean;
  /** Decoder of the final frame, one of `model.finalDecoders` (default `model.finalDecoder`). */
  finalDecoder?: FinalDecoder;
}

export interface CancelMessage {
  type: 'cancel';
  id: RequestId;
}

/** Replaces the connection's browser token before it expires (see POST /v1/tokens). */
export interface AuthMessage {
  type: 'auth';
  token: string;
}

export type ClientMessage = GenerateMessage | CancelMessage | AuthMessage;
export const CLIENT_MESSAGE_TYPES = ['generate', 'cancel', 'auth'] as const;

// ---------------------------------------------------------------- server -> client

export interface ModelInfo {
  /** Folder name of the loaded model (or model_index.json's name). */
  name: string;
  /** Default output size, from the UNet's sample size x the VAE factor. */
  width: number;
  height: number;
  /** Requested width and height must be multiples of this. */
  sizeMultiple: number;
  /** Set when the model serves one size only (exported with fixed shapes): width and height must be these. */
  fixedSize?: { width: number; height: number };
  minSteps: number;
  maxSteps: number;
  defaultSteps: number;
  scheduler: 'euler_ancestral' | 'lcm';
  img2img: boolean;
  /** How previews are made: a tiny decoder network, or a linear latent-to-RGB projection. */
  previews: 'decoder' | 'projection';
  dtype: 'float32' | 'float16';
  device: string;
  /** Decoders a request may pick for its final frame: always `vae`; `preview` when the model has a
   * preview decoder. (Optional for clients: servers from before the field offer `vae` only.) */
  finalDecoders?: FinalDecoder[];
  /** The final decoder of requests that name none (the server's `--final-decoder`); absent: `vae`. */
  finalDecoder?: FinalDecoder;
}

export interface Limits {
  /** Largest WebSocket message accepted; a bigger one closes the connection with 1009. */
  maxMessageBytes: number;
  maxPromptChars: number;
  maxImageBytes: number;
  /** Decoded width x height of an input image, checked from its header before decoding. */
  maxImagePixels: number;
  minSize: number;
  maxSize: number;
  sizeMultiple: number;
  minSteps: number;
  maxSteps: number;
  /** Requests held per connection besides the running one (latest wins). */
  maxPendingPerSession: number;
  idleTimeoutSeconds: number;
  /** Strength is accepted in (minStrength, maxStrength]. */
  minStrength: number;
  maxStrength: number;
  /** Concurrent sessions one API key (or the tokens minted with it) may hold. */
  maxSessionsPerKey: number;
  /** A connection that sends no `generate`, `cancel` or `auth` for this long is closed with
   * CloseCode.Idle, even if it answers pings (0 = never). */
  sessionIdleSeconds: number;
  /** A message must arrive whole within this many seconds of its first byte (a stalled upload is dropped). */
  messageDeadlineSeconds: number;
  /** Malformed or invalid messages tolerated per connection within a minute before it is closed
   * with CloseCode.TooManyBadMessages. */
  maxBadMessagesPerMinute: number;
  /** Sustained `generate` messages per second per connection; more get `rate_limited`. */
  maxRequestsPerSecond: number;
  /** How many `generate` messages may arrive at once before the rate applies. */
  requestBurst: number;
  /** Image-to-image inputs whose mean absolute pixel difference from the connection's previous
   * input (same parameters) is below this, on a 0-255 scale, are answered `skipped`; 0 = never. */
  similarFrameThreshold: number;
}

export interface HelloMessage {
  type: 'hello';
  protocol: number;
  model: ModelInfo;
  limits: Limits;
}

export interface PreviewMessage {
  type: 'preview';
  id: RequestId;
  /** 1-based index of the step just finished. */
  step: number;
  steps: number;
  /** JPEG bytes. */
  image: Uint8Array;
  width: number;
  height: number;
}

/** Milliseconds spent in each stage of one request. */
export interface Timings {
  /** Admission to start of work. */
  queue: number;
  /** Decoding and resizing the input image (image-to-image only). */
  imageDecode: number;
  textEncoder: number;
  /** VAE encoder (image-to-image only). */
  vaeEncoder: number;
  /** One entry per denoising step: UNet plus sampler update (preview excluded). */
  steps: number[];
  /** For each step, how many requests shared its UNet call (step-level batching). */
  batchSizes: number[];
  /** Preview decoding, summed over steps. */
  previews: number;
  /** The final decode, by the decoder named in the frame's `decoder`. */
  decode: number;
  /** Images decoded from latents for this request: its previews plus the frame (always sent by
   * this server; optional for clients of older ones). */
  decodes?: number;
  /** Encoding the final frame to its format. */
  encode: number;
  /** Admission to the frame being sent. */
  total: number;
}

export interface FrameMessage {
  type: 'frame';
  id: RequestId;
  image: Uint8Array;
  format: ImageFormat;
  width: number;
  height: number;
  seed: number;
  /** The decoder that made this image (always sent by this server; optional for clients of older ones). */
  decoder?: FinalDecoder;
  timings: Timings;
}

export interface SupersededMessage {
  type: 'superseded';
  id: RequestId;
}

/** The request was not run: its input image is nearly identical to the previous one (`sameAs`),
 * whose frame the client already has or is about to get. */
export interface SkippedMessage {
  type: 'skipped';
  id: RequestId;
  reason: 'similar_frame';
  sameAs: RequestId;
}

/** A token sent with `auth` was accepted: the connection now lives until `expiresAt`. */
export interface AuthenticatedMessage {
  type: 'authenticated';
  /** Unix time in milliseconds. */
  expiresAt: number;
}

export interface CancelledMessage {
  type: 'cancelled';
  id: RequestId;
}

export interface ErrorMessage {
  type: 'error';
  /** The request this error ends. Absent when the error is about a message that never became a
   * request (undecodable, unknown type, or a `duplicate_id` refusal: see `refusedId`). */
  id?: RequestId;
  code: ErrorCode;
  message: string;
  /** `duplicate_id`: the id the refused message carried. The request already holding that id goes
   * on and gets its own single final reply. */
  refusedId?: RequestId;
  /** Retrying the same input later may succeed: wait at least this long (ms). Set on
   * `overloaded`, `not_ready`, `shutting_down`, `engine_restarted` and `rate_limited`. */
  retryAfterMs?: number;
}

/** The server is shutting down (deploy, scale-in): every request it had accepted on this
 * connection has been answered. It closes the socket with CloseCode.GoingAway right after; connect
 * again through the same URL (a balancer sends you to another node). */
export interface GoingAwayMessage {
  type: 'going_away';
  reason: 'shutdown';
  /** Suggested wait before reconnecting (ms), already jitter-free: clients should add their own. */
  reconnectAfterMs: number;
}

export type ServerMessage =
  | HelloMessage
  | PreviewMessage
  | FrameMessage
  | SupersededMessage
  | SkippedMessage
  | AuthenticatedMessage
  | CancelledMessage
  | ErrorMessage
  | GoingAwayMessage;

// ---------------------------------------------------------------- errors

/** Stable error codes: clients switch on these, so never change a value. */
export const ErrorCode = {
  /** Not valid msgpack, or not a map. */
  BadMessage: 'bad_message',
  /** `type` missing or not a known message type. */
  UnknownType: 'unknown_type',
  /** A field has the wrong type, or a required field is missing. */
  InvalidField: 'invalid_field',
  InvalidSteps: 'invalid_steps',
  InvalidStrength: 'invalid_strength',
  InvalidSize: 'invalid_size',
  InvalidSeed: 'invalid_seed',
  InvalidFormat: 'invalid_format',
  PromptTooLong: 'prompt_too_long',
  ImageTooLarge: 'image_too_large',
  ImageUndecodable: 'image_undecodable',
  /** The loaded model has no VAE encoder. */
  Img2ImgUnsupported: 'img2img_unsupported',
  /** `finalDecoder` is not one of FINAL_DECODERS. */
  InvalidFinalDecoder: 'invalid_final_decoder',
  /** `finalDecoder` names a decoder the loaded model lacks (see `model.finalDecoders`). */
  FinalDecoderUnavailable: 'final_decoder_unavailable',
  /** A request with this id is already running or pending on this connection. */
  DuplicateId: 'duplicate_id',
  /** `cancel` named an id that is neither running nor pending. */
  UnknownRequest: 'unknown_request',
  /** More `generate` messages than `limits.maxRequestsPerSecond` allows; the request was dropped. */
  RateLimited: 'rate_limited',
  /** The token sent with `auth` is expired, malformed, signed by another server or for another key. */
  InvalidToken: 'invalid_token',
  /** The model is still loading. */
  NotReady: 'not_ready',
  /** The server is draining for shutdown and takes no new requests; reconnect (see going_away). */
  ShuttingDown: 'shutting_down',
  /** The inference process died while this request ran and is being restarted; resend it. */
  EngineRestarted: 'engine_restarted',
  /** The server's memory budget for input images is full; resend after `retryAfterMs`. */
  Overloaded: 'overloaded',
  /** Inference failed; the connection and server keep working. */
  Internal: 'internal',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** WebSocket close codes the server uses (1000-1015 are the RFC's; 4000-4999 are ours). */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  /** Message larger than `limits.maxMessageBytes`. (Past twice that, the socket is dropped unannounced: 1006.) */
  MessageTooBig: 1009,
  /** fal's realtime route only: the credential was refused (after `{"status":"error","error":"Unauthorized"}`). */
  PolicyViolation: 1008,
  /** The client read too slowly: its send buffer stayed over the limit for the slow-reader timeout. */
  SlowReader: 4001,
  /** Too many malformed or invalid messages (limits.maxBadMessagesPerMinute). */
  TooManyBadMessages: 4002,
  /** The connection's browser token expired without an in-band `auth` refresh. */
  TokenExpired: 4003,
  /** A message did not arrive whole within limits.messageDeadlineSeconds of its first byte. */
  MessageDeadline: 4004,
  /** No request, cancel or auth for limits.sessionIdleSeconds (pongs alone do not count). */
  Idle: 4008,
} as const;
