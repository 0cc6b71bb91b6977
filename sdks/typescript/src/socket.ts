/**
 * The one seam between the SDK and a WebSocket implementation.
 *
 * Node 22 and later (and browsers) have a global `WebSocket`; Node 20 does not, so the `ws`
 * package stands in there, loaded only when needed. `ws` can carry the credential in an
 * `Authorization` header and can pause reading (backpressure); the global one cannot set
 * headers, so the credential goes in the first message (`token`), and a reader that falls
 * behind is disconnected and resumed instead of paused.
 */

import { CadreError, UnavailableError, codeForStatus, errorFor } from "./errors.js";

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

/** The subprotocol the node speaks. */
const PROTOCOL = "cadre.v1";

type WsModule = typeof import("ws");
let wsModule: Promise<WsModule> | undefined;

function loadWs(): Promise<WsModule> {
  wsModule ??= import("ws").catch((e: unknown) => {
    wsModule = undefined;
    throw new CadreError(
      "internal",
      "no global WebSocket (Node 20) and the `ws` package cannot be loaded: install the SDK with its dependencies",
      0,
      { cause: e },
    );
  });
  return wsModule;
}

/** How long opening a connection may take before it counts as failed. */
const OPEN_TIMEOUT_MS = 10_000;

/** Opens a connection; resolves once it is open, or rejects with a typed error. */
export async function connect(opts: ConnectOptions, handlers: SocketHandlers): Promise<Socket> {
  const timeout = AbortSignal.timeout(OPEN_TIMEOUT_MS);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  try {
    return await open({ ...opts, signal }, handlers);
  } catch (e) {
    if (timeout.aborted && !opts.signal?.aborted) {
      throw new UnavailableError("unavailable", `event socket: not open after ${OPEN_TIMEOUT_MS} ms`, 0, { cause: e });
    }
    throw e;
  }
}

async function open(opts: ConnectOptions, handlers: SocketHandlers): Promise<Socket> {
  opts.signal?.throwIfAborted();
  const global = (globalThis as { WebSocket?: typeof WebSocket }).WebSocket;
  if (opts.choice === "global" || (opts.choice === "auto" && global !== undefined)) {
    if (global === undefined) {
      throw new CadreError("internal", "no global WebSocket in this runtime (Node 22 or later has one)");
    }
    return connectGlobal(global, opts, handlers);
  }
  return connectWs(await loadWs(), opts, handlers);
}

async function connectWs(mod: WsModule, opts: ConnectOptions, handlers: SocketHandlers): Promise<Socket> {
  const headers: Record<string, string> = {};
  if (opts.token) headers["authorization"] = `Bearer ${opts.token}`;
  const ws = new mod.WebSocket(opts.url, [PROTOCOL], { headers, perMessageDeflate: false });
  // Every error is followed by `close`, where the owner reacts; an unheard `error` would throw.
  ws.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (e?: unknown) => {
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener("abort", onAbort);
      if (e === undefined) resolve();
      else reject(e);
    };
    const onAbort = () => {
      ws.terminate();
      settle(opts.signal?.reason);
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    ws.once("open", () => settle());
    ws.once("error", (e) => settle(new UnavailableError("unavailable", `event socket: ${e.message}`, 0, { cause: e })));
    ws.once("close", (code) => settle(new UnavailableError("unavailable", `event socket closed while opening (${code})`)));
    // A refused upgrade (401, 403, 503) carries the API's JSON error body: surface it typed.
    ws.once("unexpected-response", (_req, res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        settle(httpError(res.statusCode ?? 0, Buffer.concat(chunks).toString("utf8"), res.headers["retry-after"]));
        ws.terminate();
      });
      res.on("error", () => settle(new UnavailableError("unavailable", "event socket refused")));
    });
  });
  ws.on("message", (data, isBinary) => {
    if (!isBinary) handlers.onMessage(data.toString());
  });
  ws.on("close", (code, reason) => handlers.onClose(code, reason.toString()));
  return {
    authInMessage: false,
    canPause: true,
    send: (text) => ws.send(text),
    close: () => ws.close(1000),
    terminate: () => ws.terminate(),
    pause: () => ws.pause(),
    resume: () => ws.resume(),
  };
}

async function connectGlobal(Ctor: typeof WebSocket, opts: ConnectOptions, handlers: SocketHandlers): Promise<Socket> {
  const ws = new Ctor(opts.url, [PROTOCOL]);
  await new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      ws.close();
      reject(opts.signal?.reason);
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    ws.addEventListener("open", () => {
      opts.signal?.removeEventListener("abort", onAbort);
      resolve();
    });
    ws.addEventListener("close", (ev) => {
      opts.signal?.removeEventListener("abort", onAbort);
      reject(new UnavailableError("unavailable", `event socket closed while opening (${ev.code})`));
    });
    // Some runtimes report a refused connection with `error` alone, without `close`.
    ws.addEventListener("error", () => {
      opts.signal?.removeEventListener("abort", onAbort);
      reject(new UnavailableError("unavailable", "event socket: the connection failed"));
    });
  });
  ws.addEventListener("message", (ev) => {
    if (typeof ev.data === "string") handlers.onMessage(ev.data);
  });
  ws.addEventListener("close", (ev) => handlers.onClose(ev.code, ev.reason));
  return {
    authInMessage: true,
    canPause: false,
    send: (text) => ws.send(text),
    close: () => ws.close(1000),
    // The global WebSocket has no abrupt close; a normal one is the closest.
    terminate: () => ws.close(1000),
    pause: () => {},
    resume: () => {},
  };
}

/** The typed error of an HTTP answer with the API's error body (or none). */
export function httpError(status: number, body: string, retryAfterHeader?: string | string[] | null): CadreError {
  let code = codeForStatus(status);
  let message = body.trim() || `HTTP ${status}`;
  try {
    const parsed = JSON.parse(body) as { error?: { code?: string; message?: string } };
    if (parsed.error?.code) code = parsed.error.code as typeof code;
    if (parsed.error?.message) message = parsed.error.message;
  } catch {
    // Not JSON (a proxy's page): keep the status's code and the text.
  }
  const header = Array.isArray(retryAfterHeader) ? retryAfterHeader[0] : retryAfterHeader;
  const seconds = header == null ? NaN : Number(header);
  const options = Number.isFinite(seconds) ? { retryAfter: seconds } : {};
  return errorFor(code, message, status, options);
}
