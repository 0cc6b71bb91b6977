/**
 * Typed errors: every refusal of the node arrives as `{"error": {"code", "message"}}` with an
 * HTTP status (or as a WebSocket `error` message with the same code); the SDK throws the
 * subclass of {@link CadreError} for its code, so callers can `instanceof` or switch on `code`.
 */
/** Any error the node answered, or a transport failure (`unavailable`, status 0). */
export class CadreError extends Error {
    /** The HTTP status (0 when no HTTP answer was had, e.g. on a WebSocket or a refused connection). */
    status;
    /** The API's stable code; switch on this. */
    code;
    /** The request id of a socket submission the error answers, if any. */
    requestId;
    constructor(code, message, status = 0, options) {
        super(message, options?.cause === undefined ? undefined : { cause: options.cause });
        this.name = new.target.name;
        this.code = code;
        this.status = status;
        this.requestId = options?.requestId;
    }
}
/** 400: the request is malformed or its params break the task type's schema. */
export class InvalidArgumentError extends CadreError {
}
/** 401: no credential, or a bad or expired one. */
export class UnauthenticatedError extends CadreError {
}
/** 403: the credential's role may not do this. */
export class PermissionDeniedError extends CadreError {
}
/** 404: no such task, type or workflow (also another tenant's task). */
export class NotFoundError extends CadreError {
}
/** 409: a workflow name and version exist with another definition. */
export class AlreadyExistsError extends CadreError {
}
/** 409: the target is in the wrong state (e.g. signalling a finished instance). */
export class FailedPreconditionError extends CadreError {
}
/** 413: the body is over the node's limit. */
export class PayloadTooLargeError extends CadreError {
}
/** 504: a bounded wait ran out. */
export class DeadlineExceededError extends CadreError {
}
/** 503, or the node could not be reached at all (status 0). */
export class UnavailableError extends CadreError {
}
/** 429: a quota, budget or the pending limit; `retryAfter` (seconds) when rate limited. */
export class ResourceExhaustedError extends CadreError {
    /** Seconds to wait before retrying (from `Retry-After`), when the node said. */
    retryAfter;
    constructor(code, message, status = 0, options) {
        super(code, message, status, options);
        this.retryAfter = options?.retryAfter;
    }
}
const BY_CODE = {
    invalid_argument: InvalidArgumentError,
    unauthenticated: UnauthenticatedError,
    permission_denied: PermissionDeniedError,
    not_found: NotFoundError,
    already_exists: AlreadyExistsError,
    failed_precondition: FailedPreconditionError,
    payload_too_large: PayloadTooLargeError,
    deadline_exceeded: DeadlineExceededError,
    unavailable: UnavailableError,
};
const BY_STATUS = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    409: "failed_precondition",
    413: "payload_too_large",
    429: "resource_exhausted",
    503: "unavailable",
    504: "deadline_exceeded",
};
/** The code for an HTTP status when the body did not name one. */
export function codeForStatus(status) {
    return BY_STATUS[status] ?? (status >= 500 ? "unavailable" : "internal");
}
/** The typed error for a code. */
export function errorFor(code, message, status = 0, options = {}) {
    if (code === "resource_exhausted") {
        return new ResourceExhaustedError(code, message, status, options);
    }
    const Kind = BY_CODE[code] ?? CadreError;
    // A code this SDK does not know yet stays as the node said it, on a plain CadreError.
    return new Kind((code || "internal"), message, status, options);
}
/** Whether an error is worth retrying on a fresh connection (the node may come back). */
export function isTransient(e) {
    return e instanceof UnavailableError;
}
