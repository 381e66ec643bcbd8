//! The workspace daemon library.
