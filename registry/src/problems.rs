//! Problems found in a fleet directory: every one of them, each naming the file, the
//! field and the reason, so one `validate` run shows everything to fix.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem: `<file>: <field path>: <reason>` (the field is empty for a problem
/// of the whole file or directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.field,
                self.reason
            )
        }
    }
}

/// Every problem of a fleet, in file order, then field order as found.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl Problems {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems as lines, one per problem.
    pub fn lines(&self) -> Vec<String> {
        self.0.iter().map(Problem::to_string).collect()
    }
}

/// Collects the problems of one manifest file.
pub(crate) struct FileProblems<'a> {
    pub file: &'a Path,
    pub found: Vec<Problem>,
}

impl<'a> FileProblems<'a> {
    pub fn new(file: &'a Path) -> Self {
        FileProblems {
            file,
            found: Vec::new(),
        }
    }

    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.found.push(Problem {
            file: self.file.to_owned(),
            field: field.into(),
            reason: reason.into(),
        });
    }
}
