//! The one error type for an input that is not acceptable, named by where
//! it is (a request field, a rule key, a configuration path).

/// A field that is not acceptable, named by its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct FieldError {
    /// Where, e.g. `targets[0].url` or `behaviours[0].lineage[1]`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl FieldError {
    /// `field` is wrong because of `problem`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        FieldError { field: field.into(), problem: problem.into() }
    }
}
