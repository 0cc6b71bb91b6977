/**
 * cadre's TypeScript SDK: a client of a node's JSON API and event sockets.
 *
 * - {@link CadreClient}: submit, get, list, cancel, events, types, status, workflows,
 *   signals, whoami, and `watch` (live events with automatic resume);
 * - {@link SocketSession}: many submissions on one WebSocket, each with its events and result;
 * - {@link CadreError} and its subclasses: every refusal, typed by its code.
 */
export { CadreClient } from "./client.js";
export type { CallOptions, ClientOptions, WaitOptions } from "./client.js";
export { AlreadyExistsError, CadreError, DeadlineExceededError, FailedPreconditionError, InvalidArgumentError, NotFoundError, PayloadTooLargeError, PermissionDeniedError, ResourceExhaustedError, UnauthenticatedError, UnavailableError, errorFor, } from "./errors.js";
export type { ErrorCode } from "./errors.js";
export { SocketSession } from "./session.js";
export type { SessionOptions, Submission, SubmitOptions } from "./session.js";
export type { WebSocketChoice } from "./socket.js";
export { Watch } from "./watch.js";
export type { ReconnectReason, SocketTarget, WatchOptions } from "./watch.js";
export * from "./types.js";
