/**
 * Typed errors: every refusal of the node arrives as `{"error": {"code", "message"}}` with an
 * HTTP status (or as a WebSocket `error` message with the same code); the SDK throws the
 * subclass of {@link CadreError} for its code, so callers can `instanceof` or switch on `code`.
 */
/** The stable error codes of the API (docs/HTTP_API.md "Errors"). */
export type ErrorCode = "invalid_argument" | "unauthenticated" | "permission_denied" | "not_found" | "already_exists" | "failed_precondition" | "payload_too_large" | "resource_exhausted" | "unavailable" | "deadline_exceeded" | "internal";
/** Any error the node answered, or a transport failure (`unavailable`, status 0). */
export declare class CadreError extends Error {
    /** The HTTP status (0 when no HTTP answer was had, e.g. on a WebSocket or a refused connection). */
    readonly status: number;
    /** The API's stable code; switch on this. */
    readonly code: ErrorCode;
    /** The request id of a socket submission the error answers, if any. */
    readonly requestId: string | undefined;
    constructor(code: ErrorCode, message: string, status?: number, options?: {
        cause?: unknown;
        requestId?: string;
    });
}
/** 400: the request is malformed or its params break the task type's schema. */
export declare class InvalidArgumentError extends CadreError {
}
/** 401: no credential, or a bad or expired one. */
export declare class UnauthenticatedError extends CadreError {
}
/** 403: the credential's role may not do this. */
export declare class PermissionDeniedError extends CadreError {
}
/** 404: no such task, type or workflow (also another tenant's task). */
export declare class NotFoundError extends CadreError {
}
/** 409: a workflow name and version exist with another definition. */
export declare class AlreadyExistsError extends CadreError {
}
/** 409: the target is in the wrong state (e.g. signalling a finished instance). */
export declare class FailedPreconditionError extends CadreError {
}
/** 413: the body is over the node's limit. */
export declare class PayloadTooLargeError extends CadreError {
}
/** 504: a bounded wait ran out. */
export declare class DeadlineExceededError extends CadreError {
}
/** 503, or the node could not be reached at all (status 0). */
export declare class UnavailableError extends CadreError {
}
/** 429: a quota, budget or the pending limit; `retryAfter` (seconds) when rate limited. */
export declare class ResourceExhaustedError extends CadreError {
    /** Seconds to wait before retrying (from `Retry-After`), when the node said. */
    readonly retryAfter: number | undefined;
    constructor(code: ErrorCode, message: string, status?: number, options?: {
        cause?: unknown;
        requestId?: string;
        retryAfter?: number;
    });
}
/** The code for an HTTP status when the body did not name one. */
export declare function codeForStatus(status: number): ErrorCode;
/** The typed error for a code. */
export declare function errorFor(code: string, message: string, status?: number, options?: {
    cause?: unknown;
    requestId?: string;
    retryAfter?: number;
}): CadreError;
/** Whether an error is worth retrying on a fresh connection (the node may come back). */
export declare function isTransient(e: unknown): boolean;
