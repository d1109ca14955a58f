//! The `sparring` command line.
fn main() {}
