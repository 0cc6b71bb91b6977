//! What can go wrong on a call: one variant per gRPC status a caller handles differently, and
//! the local failures (a bad endpoint, TLS files, the connection).

use tonic::Code;

/// A failed call or connection. Status variants carry the node's message, which names the
/// field or the rule at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint is not a URL tonic can dial.
    #[error("invalid endpoint {endpoint:?}: {message}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is not usable.
        message: String,
    },
    /// The node could not be reached (refused, timed out, TLS handshake failed).
    #[error("cannot reach cadre at {endpoint}: {message}")]
    Connect {
        /// The endpoint dialled.
        endpoint: String,
        /// What the transport said.
        message: String,
    },
    /// A local setting is unusable (a credential a header cannot carry, params that are not
    /// JSON, a TLS file that cannot be read).
    #[error("{0}")]
    Config(String),
    /// INVALID_ARGUMENT: the request is wrong (params, ids, filters).
    #[error("InvalidArgument: {0}")]
    InvalidArgument(String),
    /// NOT_FOUND: no such task, workflow or key for this caller's tenant.
    #[error("NotFound: {0}")]
    NotFound(String),
    /// ALREADY_EXISTS: e.g. a workflow version registered with another definition.
    #[error("AlreadyExists: {0}")]
    AlreadyExists(String),
    /// UNAUTHENTICATED: no credential, or one that is not valid.
    #[error("Unauthenticated: {0}")]
    Unauthenticated(String),
    /// PERMISSION_DENIED: the credential's role may not do this.
    #[error("PermissionDenied: {0}")]
    PermissionDenied(String),
    /// RESOURCE_EXHAUSTED: a quota, a budget or a bound said no; try again later.
    #[error("ResourceExhausted: {0}")]
    ResourceExhausted(String),
    /// FAILED_PRECONDITION: the target is in the wrong state (e.g. a finished instance).
    #[error("FailedPrecondition: {0}")]
    FailedPrecondition(String),
    /// UNAVAILABLE: the node or its store could not serve the call (after the retries).
    #[error("Unavailable: {0}")]
    Unavailable(String),
    /// DEADLINE_EXCEEDED: the call or the wait ran out of time.
    #[error("DeadlineExceeded: {0}")]
    DeadlineExceeded(String),
    /// Any other status (INTERNAL, UNKNOWN, CANCELLED, ...).
    #[error("{:?}: {}", .0.code(), .0.message())]
    Status(Box<tonic::Status>),
}

/// A call's result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The gRPC status code this error stands for (`Unknown` for the local failures).
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidEndpoint { .. } | Error::Config(_) => Code::InvalidArgument,
            Error::Connect { .. } | Error::Unavailable(_) => Code::Unavailable,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Status(s) => s.code(),
        }
    }

    /// Whether trying the same call again may succeed: UNAVAILABLE and an unreachable node.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Connect { .. } | Error::Unavailable(_))
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        let m = s.message().to_string();
        match s.code() {
            Code::InvalidArgument => Error::InvalidArgument(m),
            Code::NotFound => Error::NotFound(m),
            Code::AlreadyExists => Error::AlreadyExists(m),
            Code::Unauthenticated => Error::Unauthenticated(m),
            Code::PermissionDenied => Error::PermissionDenied(m),
            Code::ResourceExhausted => Error::ResourceExhausted(m),
            Code::FailedPrecondition => Error::FailedPrecondition(m),
            Code::Unavailable => Error::Unavailable(m),
            Code::DeadlineExceeded => Error::DeadlineExceeded(m),
            _ => Error::Status(Box::new(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_their_variants_and_keep_code_and_message() {
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Internal,
        ] {
            let e = Error::from(tonic::Status::new(code, "why"));
            assert_eq!(e.code(), code);
            assert_eq!(e.to_string(), format!("{code:?}: why"));
            assert_eq!(e.is_retryable(), code == Code::Unavailable);
        }
        assert!(matches!(
            Error::from(tonic::Status::not_found("x")),
            Error::NotFound(m) if m == "x"
        ));
    }
}
