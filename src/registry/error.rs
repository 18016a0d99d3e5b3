//! The registry's error type. Each variant maps to one Confluent HTTP status and
//! `error_code`, and its message is the one Confluent clients show to users.
//!
//! Invariant: a variant's `Display` is exactly the `message` of the JSON error body, so what
//! the log says and what the client sees are the same text.

/// Everything that can go wrong in the registry, from a bad request to an unreachable broker.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    /// The message names what was looked for ("Schema 7 not found", "Schema not found").
    #[error("{0}")]
    SchemaNotFound(String),
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error(
        "Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently"
    )]
    VersionSoftDeleted { subject: String, version: u32 },
    #[error(
        "Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
    )]
    VersionNotSoftDeleted { subject: String, version: u32 },
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectLevelNotConfigured(String),
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error(
        "Invalid compatibility level '{0}'. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"
    )]
    InvalidCompatibility(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{details}]")]
    Incompatible { subject: String, details: String },
    #[error("Unprocessable request: {0}")]
    Unprocessable(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("HTTP 404 Not Found")]
    RouteNotFound,
    #[error("Error in the schema store: {0}")]
    Store(String),
    #[error("Timed out: {0}")]
    Timeout(String),
    /// Setting up: binding the listener, creating Kafka clients or the topic.
    #[error("{context}: {cause}")]
    Setup { context: String, cause: String },
}

impl RegistryError {
    /// The HTTP status Confluent answers with.
    pub fn status(&self) -> u16 {
        use RegistryError::*;
        match self {
            SubjectNotFound(_)
            | VersionNotFound(_)
            | SchemaNotFound(_)
            | SubjectSoftDeleted(_)
            | SubjectNotSoftDeleted(_)
            | VersionSoftDeleted { .. }
            | VersionNotSoftDeleted { .. }
            | SubjectLevelNotConfigured(_)
            | RouteNotFound => 404,
            InvalidSchema(_) | InvalidVersion(_) | InvalidCompatibility(_) | Unprocessable(_) => {
                422
            }
            Incompatible { .. } => 409,
            Unauthorized => 401,
            Store(_) | Timeout(_) | Setup { .. } => 500,
        }
    }

    /// Confluent's `error_code` for the body.
    pub fn code(&self) -> u32 {
        use RegistryError::*;
        match self {
            SubjectNotFound(_) => 40401,
            VersionNotFound(_) => 40402,
            SchemaNotFound(_) => 40403,
            SubjectSoftDeleted(_) => 40404,
            SubjectNotSoftDeleted(_) => 40405,
            VersionSoftDeleted { .. } => 40406,
            VersionNotSoftDeleted { .. } => 40407,
            SubjectLevelNotConfigured(_) => 40408,
            InvalidSchema(_) => 42201,
            InvalidVersion(_) => 42202,
            InvalidCompatibility(_) => 42203,
            Unprocessable(_) => 422,
            Incompatible { .. } => 409,
            Unauthorized => 401,
            RouteNotFound => 404,
            Store(_) | Setup { .. } => 50001,
            Timeout(_) => 50002,
        }
    }

    pub(crate) fn setup(context: impl Into<String>) -> impl FnOnce(String) -> RegistryError {
        let context = context.into();
        move |cause| RegistryError::Setup { context, cause }
    }
}
