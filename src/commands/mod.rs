//! The binary's commands that are more than a call into one module.

pub mod user;
