pub fn x() {}
pub mod models;
