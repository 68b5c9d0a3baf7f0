//! Pure domain types and rules: object types, association type definitions,
//! limits, the write planner and errors. No I/O.
pub mod access;
pub mod admin;
pub mod builtin;
pub mod error;
pub mod feed;
pub mod labels;
pub mod limits;
pub mod merge;
pub mod object_type;
pub mod plan;
pub mod types;
pub mod verify;

pub use error::{DomainError, ErrorKind, LimitSource, LimitViolation};
pub use object_type::{one_line, ObjectType, MESSAGE_MOST};
pub use types::{Category, PairCatalog, TypeDef, TypeKey, TypeRole};
