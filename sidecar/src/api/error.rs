//! Why a call failed, and the one place such failures become gRPC
//! statuses (`From<CallError> for Status`). Input echoed back in a message
//! goes through [`echo`]: a 900 KB image name comes back as 256 bytes and
//! a length, with control characters shown escaped, never obeyed.

use telltale_core::field::FieldError;
use telltale_core::text::bounded;
use tonic::{Code, Status};

use super::auth::{AuthError, Call};
use crate::config::Role;
use crate::store::StoreError;

/// The most bytes of one echoed input value kept in an error message.
pub const ECHO_MAX: usize = 256;

/// The most bytes of a status message before it is cut: a backstop for
/// messages built elsewhere (core validation, the store) that may quote
/// input at length.
pub const MESSAGE_MAX: usize = 1024;

/// `value` as an error message may quote it: in double quotes, at most
/// [`ECHO_MAX`] bytes of it followed by `…(N bytes in all)` when longer,
/// control and bidi characters escaped.
pub fn echo(value: &str) -> String {
    format!("\"{}\"", bounded(value, ECHO_MAX))
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The caller could not be authenticated.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// The caller's role does not allow the call.
    #[error("principal {} has role {have:?}; {call} needs {need:?}", echo(.principal))]
    Forbidden {
        /// Who called.
        principal: String,
        /// Their role.
        have: Role,
        /// The call.
        call: Call,
        /// The role it needs.
        need: Role,
    },
    /// A request field is not acceptable (messages quote input through [`echo`]).
    #[error(transparent)]
    Field(#[from] FieldError),
    /// What the request names does not exist.
    #[error("no {what} {}", echo(.key))]
    NotFound {
        /// What kind of thing (`signal`, `profile for image`...).
        what: &'static str,
        /// The name or id asked for.
        key: String,
    },
    /// The daemon is shutting down (or gone).
    #[error("telltale is shutting down")]
    ShuttingDown,
    /// The store could not be read.
    #[error("store: {}", telltale_core::error_chain(.0))]
    Store(#[source] StoreError),
    /// A blocking task panicked or was cancelled.
    #[error("internal: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The answer could not be encoded.
    #[error("encoding the answer: {0}")]
    Encode(#[from] serde_json::Error),
    /// The daemon answered something it should not have.
    #[error("internal: {0}")]
    Internal(&'static str),
}

impl CallError {
    /// Field `field` is wrong because of `problem` (which quotes input through [`echo`]).
    pub fn field(field: impl Into<String>, problem: impl Into<String>) -> Self {
        CallError::Field(FieldError::new(field, problem))
    }

    /// No `what` named `key`.
    pub fn not_found(what: &'static str, key: impl Into<String>) -> Self {
        CallError::NotFound { what, key: key.into() }
    }

    /// The gRPC status code.
    pub fn code(&self) -> Code {
        match self {
            CallError::Unauthenticated(_) => Code::Unauthenticated,
            CallError::Forbidden { .. } => Code::PermissionDenied,
            CallError::Field(_) => Code::InvalidArgument,
            CallError::NotFound { .. } => Code::NotFound,
            CallError::ShuttingDown => Code::Unavailable,
            CallError::Store(_) | CallError::Task(_) | CallError::Encode(_) | CallError::Internal(_) => Code::Internal,
        }
    }
}

impl From<StoreError> for CallError {
    fn from(e: StoreError) -> Self {
        CallError::Store(e)
    }
}

impl From<CallError> for Status {
    fn from(e: CallError) -> Status {
        Status::new(e.code(), bounded(&e.to_string(), MESSAGE_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_bounds_and_escapes_input() {
        assert_eq!(echo("cws-webapp"), "\"cws-webapp\"");
        let huge = "a".repeat(900 * 1024);
        let e = echo(&huge);
        assert_eq!(e, format!("\"{}…(921600 bytes in all)\"", "a".repeat(ECHO_MAX)));
        assert_eq!(echo("web\n\x1b[2Jx"), "\"web\\n\\x1b[2Jx\"");
        // Cut at a character boundary, never inside one.
        let wide = "é".repeat(ECHO_MAX);
        let e = echo(&wide);
        assert!(e.starts_with(&format!("\"{}…", "é".repeat(ECHO_MAX / 2))), "{e}");
        assert!(e.ends_with(&format!("({} bytes in all)\"", ECHO_MAX * 2)), "{e}");
    }

    #[test]
    fn each_failure_has_its_status_code() {
        let cases: Vec<(CallError, Code)> = vec![
            (AuthError::Missing.into(), Code::Unauthenticated),
            (
                CallError::Forbidden {
                    principal: "vera".into(),
                    have: Role::Viewer,
                    call: Call::UpdateSignal,
                    need: Role::Responder,
                },
                Code::PermissionDenied,
            ),
            (CallError::field("image", "is empty"), Code::InvalidArgument),
            (CallError::not_found("signal", "s-1"), Code::NotFound),
            (CallError::ShuttingDown, Code::Unavailable),
            (StoreError::Missing("/nowhere/telltale.db".into()).into(), Code::Internal),
            (CallError::Internal("the rule was not saved"), Code::Internal),
        ];
        for (e, code) in cases {
            let text = e.to_string();
            let status = Status::from(e);
            assert_eq!(status.code(), code, "{text}");
            assert_eq!(status.message(), text);
        }
    }

    #[test]
    fn messages_name_the_input_but_never_echo_much_of_it() {
        let image = format!("{}\r\nforged: yes", "x".repeat(900 * 1024));
        let s = Status::from(CallError::not_found("profile for image", image.clone()));
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().starts_with("no profile for image \"xxx"), "{}", s.message());
        assert!(s.message().len() < ECHO_MAX + 64, "{}", s.message().len());
        assert!(s.message().ends_with(&format!("…({} bytes in all)\"", image.len())), "{}", s.message());

        let s = Status::from(CallError::Forbidden {
            principal: "ev\nil".into(),
            have: Role::Viewer,
            call: Call::CreateNotificationRule,
            need: Role::Admin,
        });
        assert_eq!(s.message(), "principal \"ev\\nil\" has role Viewer; CreateNotificationRule needs Admin");

        // A message built elsewhere that quotes input whole is still cut
        // and escaped here.
        let url = format!("http://a\u{202e}b\n{}", "x".repeat(900 * 1024));
        let raw = FieldError::new("targets[0].slack.url", format!("\"{url}\" is not an http(s) URL"));
        let s = Status::from(CallError::Field(raw));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message().starts_with("field `targets[0].slack.url`: \"http://a\\u{202e}b\\nxxx"),
            "{}",
            &s.message()[..80]
        );
        assert!(s.message().len() <= MESSAGE_MAX + 64, "{}", s.message().len());
        assert!(!s.message().contains(['\n', '\r']));
    }
}
