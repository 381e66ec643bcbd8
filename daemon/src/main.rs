//! `workspaced` entry point.

fn main() {}
