//! The node's error type and its mapping to gRPC status codes, in one place.

use cadre_proto::SpecError;
use tonic::{Code, Status};

use cadre_store::StoreError;
use cadre_supervisors::ScaleError;

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed or out-of-range input (`INVALID_ARGUMENT`, or `RESOURCE_EXHAUSTED` when too large).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// No such task, supervisor or worker kind (`NOT_FOUND`).
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit the current state (`FAILED_PRECONDITION`).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A node limit is reached (`RESOURCE_EXHAUSTED`).
    #[error("{0}")]
    Exhausted(String),
    /// The tenant is past a budget cap (`RESOURCE_EXHAUSTED`); unlike [`Error::Exhausted`] it
    /// does not pass by retrying soon (a workflow's agent loop stops on it).
    #[error("{0}")]
    OverBudget(String),
    /// What the request would create exists already, differently (`ALREADY_EXISTS`).
    #[error("{0}")]
    AlreadyExists(String),
    /// The tenant submits faster than its rate limit (`RESOURCE_EXHAUSTED` with a RetryInfo
    /// detail and a `retry-after-ms` header).
    #[error("{message}")]
    RateLimited {
        /// What was exceeded.
        message: String,
        /// When a submit will be admitted again.
        retry_after: std::time::Duration,
    },
    /// The store or another dependency is unreachable (`UNAVAILABLE`); safe to retry.
    #[error("{0}")]
    Unavailable(String),
    /// No valid credential (`UNAUTHENTICATED`).
    #[error("{0}")]
    Unauthenticated(String),
    /// The credential's role or tenant does not allow this (`PERMISSION_DENIED`).
    #[error("{0}")]
    PermissionDenied(String),
    /// Waiting ran out before the task finished (`DEADLINE_EXCEEDED`); the task goes on.
    #[error("{0}")]
    DeadlineExceeded(String),
}

/// Result of node operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A peer node's answer as this node's error, keeping its class (so a caller sees the
    /// same status code the peer gave).
    pub fn from_status(s: Status) -> Self {
        let m = s.message().to_string();
        match s.code() {
            Code::InvalidArgument => Error::Spec(SpecError::invalid("peer", m)),
            Code::NotFound => Error::NotFound(m),
            Code::FailedPrecondition => Error::FailedPrecondition(m),
            Code::ResourceExhausted => Error::Exhausted(m),
            Code::AlreadyExists => Error::AlreadyExists(m),
            Code::Unauthenticated => Error::Unauthenticated(m),
            Code::PermissionDenied => Error::PermissionDenied(m),
            Code::DeadlineExceeded => Error::DeadlineExceeded(m),
            _ => Error::Unavailable(m),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Unavailable(e.to_string())
    }
}

impl From<cadre_bus::BusError> for Error {
    fn from(e: cadre_bus::BusError) -> Self {
        use cadre_bus::BusError;
        match e {
            BusError::Unavailable(m) => Error::Unavailable(m),
            BusError::NotFound(m) => Error::NotFound(m),
            BusError::Invalid(m) => Error::Spec(SpecError::invalid("replicas", m)),
            BusError::FailedPrecondition(m) => Error::FailedPrecondition(m),
            BusError::DeadlineExceeded(m) => Error::DeadlineExceeded(m),
            BusError::Peer(s) => Error::from_status(s),
            BusError::Store(e) => e.into(),
        }
    }
}

impl From<ScaleError> for Error {
    fn from(e: ScaleError) -> Self {
        match e {
            ScaleError::NotFound(m) => Error::NotFound(m),
            ScaleError::Invalid(m) => Error::Spec(SpecError::invalid("replicas", m)),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        if let Error::RateLimited { message, retry_after } = &e {
            use tonic_types::{ErrorDetails, StatusExt};
            let details = ErrorDetails::with_retry_info(Some(*retry_after));
            let mut status = Status::with_error_details(Code::ResourceExhausted, message.clone(), details);
            if let Ok(v) = retry_after.as_millis().to_string().parse() {
                status.metadata_mut().insert("retry-after-ms", v);
            }
            return status;
        }
        let code = match &e {
            Error::Spec(SpecError::Invalid { .. }) => Code::InvalidArgument,
            Error::Spec(SpecError::TooLarge { .. })
            | Error::Exhausted(_)
            | Error::OverBudget(_)
            | Error::RateLimited { .. } => Code::ResourceExhausted,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::NotFound(_) => Code::NotFound,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
        };
        Status::new(code, e.to_string())
    }
}
