//! The bus's one error type.

/// Why a bus operation failed; the core maps each to its own error class.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// NATS, a peer or the local actor tree cannot be reached now; safe to retry.
    #[error("{0}")]
    Unavailable(String),
    /// No such supervisor, pool or peer.
    #[error("{0}")]
    NotFound(String),
    /// A request out of range (a pool size above the maximum).
    #[error("{0}")]
    Invalid(String),
    /// The request does not fit the current state (a supervisor that does not run here).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Waiting ran out before the task finished; the task goes on.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A peer node refused the call; its status (and so its class) is kept.
    #[error("{}", .0.message())]
    Peer(tonic::Status),
    /// The store refused a write the bus made (a cancel recorded before its broadcast).
    #[error(transparent)]
    Store(#[from] cadre_store::StoreError),
}

impl From<cadre_supervisors::ScaleError> for BusError {
    fn from(e: cadre_supervisors::ScaleError) -> Self {
        match e {
            cadre_supervisors::ScaleError::NotFound(m) => BusError::NotFound(m),
            cadre_supervisors::ScaleError::Invalid(m) => BusError::Invalid(m),
        }
    }
}

/// Result of bus operations.
pub type BusResult<T> = Result<T, BusError>;
