/**
 * The one seam between the SDK and a WebSocket implementation.
 *
 * Node 22 and later (and browsers) have a global `WebSocket`; Node 20 does not, so the `ws`
 * package stands in there, loaded only when needed. `ws` can carry the credential in an
 * `Authorization` header and can pause reading (backpressure); the global one cannot set
 * headers, so the credential goes in the first message (`token`), and a reader that falls
 * behind is disconnected and resumed instead of paused.
 */
import { CadreError } from "./errors.js";
/** Which WebSocket to use: `"auto"` prefers the global one, then `ws`. */
export type WebSocketChoice = "auto" | "global" | "ws";
/** What a connection reports to its owner. */
export interface SocketHandlers {
    /** A text message arrived. */
    onMessage(text: string): void;
    /** The connection closed (code 1006: dropped without a close frame). */
    onClose(code: number, reason: string): void;
}
/** An open WebSocket, whatever implements it. */
export interface Socket {
    /** True when the credential must travel in the first message (no header possible). */
    readonly authInMessage: boolean;
    /** True when `pause()` really stops reading (else a slow reader must disconnect). */
    readonly canPause: boolean;
    send(text: string): void;
    /** Closes normally (1000). */
    close(): void;
    /** Drops the connection at once, without a close handshake. */
    terminate(): void;
    pause(): void;
    resume(): void;
}
/** Where a connection goes and with what credential. */
export interface ConnectOptions {
    /** The `ws://` or `wss://` URL of `/v1/events`. */
    url: string;
    token: string | undefined;
    choice: WebSocketChoice;
    signal?: AbortSignal | undefined;
}
/** Opens a connection; resolves once it is open, or rejects with a typed error. */
export declare function connect(opts: ConnectOptions, handlers: SocketHandlers): Promise<Socket>;
/** The typed error of an HTTP answer with the API's error body (or none). */
export declare function httpError(status: number, body: string, retryAfterHeader?: string | string[] | null): CadreError;
