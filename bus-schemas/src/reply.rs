//! The reply envelope every request gets: `{ok: true, data}` or `{ok: false, error}`.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request could not be decoded or failed validation.
    BadRequest,
    /// The workload, run or node does not exist.
    NotFound,
    /// The request clashes with existing state (same id, different spec).
    Conflict,
    /// Not allowed by this node's configuration.
    Forbidden,
    /// Temporarily unable (lameduck, backend missing, shutting down).
    Unavailable,
    /// A bug or an unexpected failure on the responder's side.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The number for the NATS service error header (`Nats-Service-Error-Code`).
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl fmt::Display) -> ErrorBody {
        ErrorBody::new(ErrorCode::BadRequest, message.to_string())
    }

    pub fn not_found(message: impl Into<String>) -> ErrorBody {
        ErrorBody::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> ErrorBody {
        ErrorBody::new(ErrorCode::Conflict, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ErrorBody {
        ErrorBody::new(ErrorCode::Unavailable, message)
    }

    pub fn internal(message: impl fmt::Display) -> ErrorBody {
        ErrorBody::new(ErrorCode::Internal, message.to_string())
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorBody {}

/// Header naming a failed request's message, as NATS services do.
pub const SERVICE_ERROR_HEADER: &str = "Nats-Service-Error";
/// Header carrying [`ErrorCode::status`].
pub const SERVICE_ERROR_CODE_HEADER: &str = "Nats-Service-Error-Code";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply<T> {
    pub ok: bool,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl<T> Reply<T> {
    pub fn ok(data: T) -> Self {
        Reply {
            ok: true,
            data: Some(data),
            error: None,
        }
    }

    pub fn err(code: ErrorCode, message: impl Into<String>) -> Self {
        Reply {
            ok: false,
            data: None,
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
        }
    }

    /// The data of a successful reply, or its error.
    pub fn into_result(self) -> Result<T, ErrorBody> {
        match (self.ok, self.data, self.error) {
            (true, Some(data), _) => Ok(data),
            (_, _, Some(error)) => Err(error),
            (true, None, None) => Err(ErrorBody {
                code: ErrorCode::Internal,
                message: "reply says ok but carries no data".into(),
            }),
            (false, _, None) => Err(ErrorBody {
                code: ErrorCode::Internal,
                message: "reply says not ok but carries no error".into(),
            }),
        }
    }
}
