//! The values each key-only scope has given a counter of its own, per window: the
//! memory store's record, and the Redis store's local copy of what Redis admitted.

use dashmap::DashMap;
use std::collections::HashSet;

#[derive(Default)]
pub(super) struct Scopes {
    scopes: DashMap<String, Scope>,
}

struct Scope {
    values: HashSet<Box<str>>,
    expires_at: u64,
}

/// What a scope knows of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// It has its own counter.
    Known,
    /// Not known, and the scope has no room.
    Full,
    /// Not known; there is room.
    New,
}

impl Scopes {
    /// Read lock only: what nearly every request needs.
    pub(super) fn check(&self, scope: &str, value: &str, max: usize) -> Seen {
        match self.scopes.get(scope) {
            Some(seen) if seen.values.contains(value) => Seen::Known,
            Some(seen) if seen.values.len() >= max => Seen::Full,
            _ if max == 0 => Seen::Full,
            _ => Seen::New,
        }
    }

    /// Adds `value` if the scope has room; says what it found (`New`: added).
    pub(super) fn add(&self, scope: &str, value: &str, max: usize, expires_at: u64) -> Seen {
        let mut seen = self
            .scopes
            .entry(scope.to_owned())
            .or_insert_with(|| Scope {
                values: HashSet::new(),
                expires_at,
            });
        if seen.values.contains(value) {
            Seen::Known
        } else if seen.values.len() >= max {
            Seen::Full
        } else {
            seen.values.insert(value.into());
            Seen::New
        }
    }

    /// Drops the scopes whose window has ended; returns how many values went.
    pub(super) fn sweep(&self, now: u64) -> usize {
        let mut freed = 0;
        self.scopes.retain(|_, scope| {
            let keep = scope.expires_at > now;
            if !keep {
                freed += scope.values.len();
            }
            keep
        });
        freed
    }

    /// Every scope with its values, sorted (tests and debugging).
    pub(super) fn list(&self) -> Vec<(String, Vec<String>)> {
        let mut scopes: Vec<(String, Vec<String>)> = self
            .scopes
            .iter()
            .map(|e| {
                let mut values: Vec<String> = e.values.iter().map(|v| v.to_string()).collect();
                values.sort();
                (e.key().clone(), values)
            })
            .collect();
        scopes.sort();
        scopes
    }
}
