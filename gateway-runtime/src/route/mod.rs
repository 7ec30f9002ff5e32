//! Which route takes a request (`router`), and the path its upstream sees (`path`).
//! Pure: the compiler runs the same code for route tests.

pub mod path;
pub mod router;
