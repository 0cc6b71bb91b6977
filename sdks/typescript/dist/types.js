/**
 * The JSON shapes of cadre's HTTP API (docs/HTTP_API.md), field for field.
 *
 * Bodies and answers keep the API's own snake_case names, so the API reference reads as the
 * SDK's reference too; only options that exist in the SDK alone (an `AbortSignal`, buffer
 * sizes) are camelCase.
 */
/** The states after which a task never changes again. */
export const TERMINAL_STATES = ["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"];
/** Whether `state` is terminal (the task will not run again). */
export function isTerminal(state) {
    return TERMINAL_STATES.includes(state);
}
