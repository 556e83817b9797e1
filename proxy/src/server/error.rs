//! The one error type of the HTTP edge: every failure becomes a status and a JSON
//! body `{"error": "...", "fields": [{"field", "message"}]}` the form can show.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use caplab_shared::FieldError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("malformed JSON: {0}")]
    BadJson(String),
    #[error("the experiment is not valid")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
    /// This caplab is at a limit of its own for now (503).
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Serialize)]
pub struct ErrorBody {
    pub error: String,
    pub fields: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let fields = match &self {
            ApiError::Invalid(f) => f.clone(),
            _ => vec![],
        };
        let error = match &self {
            ApiError::Invalid(f) => f.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
            other => other.to_string(),
        };
        (status, Json(ErrorBody { error, fields })).into_response()
    }
}

impl From<crate::runs::FilesError> for ApiError {
    fn from(e: crate::runs::FilesError) -> Self {
        use crate::runs::FilesError;
        match e {
            FilesError::NoRun(m) => ApiError::NotFound(m),
            FilesError::Live(m) => ApiError::Conflict(m),
            FilesError::Io(m) => ApiError::Internal(m),
        }
    }
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError::new(field, message)])
    }
}
