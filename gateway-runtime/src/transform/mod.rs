//! Transformations: JSON field rules (`shape`), applied to an aggregate call's answer
//! or, by a route's `request_body` and `response_body` rules, to any route's bodies
//! (`body`).

pub mod body;
mod parse;
pub mod shape;
pub mod text;
pub mod validate;
