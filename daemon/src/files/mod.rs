//! Workspace files: versions (git blob ids), durable atomic writes, the
//! apply engine, and tree listings. Every path goes through `confine`.

pub mod apply;
pub mod disk;
pub mod edit;
pub mod ignore_rules;
pub mod index;
pub mod oid;
pub mod patch;
pub mod tree;
pub mod upload;

use std::os::fd::AsFd;

pub use disk::Kind;

use crate::confine::PathError;

/// A file, symlink or directory as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    /// The blob id; `None` for directories.
    pub oid: Option<String>,
    pub size: u64,
    pub mode: &'static str,
}

impl Entry {
    /// Reads `name` in `dir` (never followed) as the entry `path`.
    pub fn read<D: AsFd>(dir: &D, name: &str, path: &str) -> Result<Option<Entry>, PathError> {
        // Hashed in bounded pieces: an entry of any size costs no memory.
        match disk::version_at(dir, name) {
            Ok(None) => Ok(None),
            Ok(Some((meta, oid, _))) => Ok(Some(Entry {
                path: path.to_owned(),
                kind: meta.kind,
                oid: Some(oid),
                size: meta.size,
                mode: meta.git_mode(),
            })),
            Err(disk::ReadError::IsDir) => Ok(Some(Entry {
                path: path.to_owned(),
                kind: Kind::Dir,
                oid: None,
                size: 0,
                mode: "040000",
            })),
            Err(disk::ReadError::NotAFile) => Ok(None),
            Err(disk::ReadError::Path(e)) => Err(e),
        }
    }
}

/// A change on disk, for the sync event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Changed(Entry),
    Deleted { path: String, kind: Kind },
}
